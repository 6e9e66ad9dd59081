/**
 * Applying MEND: the edit API (mend-spec §2.2, §3.6, §5.4).
 *
 *   1. one forward/backward pass of the base model on the edit example(s) gives u_ℓ, δ_ℓ;
 *   2. per edited weight W_ℓ: normalise, run the editor, form ∇̃W_ℓ = Σ ũ δ̃ᵀ;
 *   3. W'_ℓ = W_ℓ + α_ℓ ∇̃W_ℓ  (the official code *adds*; the paper writes W − α∇̃W, and α is learned).
 *
 * `mendEdit` is pure: it returns a new parameter record in which only the edited weights are new
 * tensors (the rest are the base's, shared by reference) and never mutates the base. k requests in
 * one call are one batched edit (a single mean loss over all their target tokens). Editing the
 * returned model again gives sequential edits. As in the official code, the edit loss of a call is
 * the mean NLL over all target tokens of all its requests (so each δ carries a 1/#tokens factor).
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, makeBatch, TextExample } from "./batch";
import { Editor, applyEditorAll, lossGroups, netFor, pseudoGradient } from "./editor";
import { captureFactors, disposeFactors, Factors } from "./factor";
import { GPT2Config } from "./config";
import { gptForward, Params } from "./gpt";
import { firstTargetArgmax, Preservation, preservedInputsAt, preservedRows, validatePreservation } from "./preserve";
import { CalibrationResult, calibrateSteps, RequestUpdate, StepCalibration, validateCalibration } from "./calibrate";
import { decorrelatedKeys } from "./precond";
import { inputScale, normalizeFactors, updateStats } from "./stats";
import { ModelView } from "./score";

export type EditRequest = TextExample;

/** The editor's output per edited weight: ũ (or the key) [Nk, d_in] and δ̃ [Nk, d_out]. */
export type Transformed = Record<string, { uTilde: tf.Tensor2D; deltaTilde: tf.Tensor2D }>;

/**
 * The differentiable core: W' = W + lrScale·α·∇̃W for every edited weight. Use inside a gradient
 * closure (meta-training) or `tf.tidy` (editing). @returns name -> W' [d_in, d_out]
 */
export function editedWeights(params: Readonly<Params>, editor: Editor, factors: Factors, lrScale = 1): Record<string, tf.Tensor2D> {
  const transformed = transformFactors(editor, factors); // one edit call
  const out: Record<string, tf.Tensor2D> = {};
  for (const name of editor.config.innerParams) {
    const { uTilde, deltaTilde } = transformed[name];
    const g = pseudoGradient(uTilde, deltaTilde); // [d_in, d_out]
    out[name] = tf.add(params[name], tf.mul(tf.mul(editor.editLrs[name], lrScale), g)) as tf.Tensor2D;
  }
  return out;
}

/**
 * The factors `editor` consumes for `batch`: its edited weights, its edit loss (official one mean,
 * or per request with `batchLoss: "sum"`; `callGroup`, batch row -> edit call, keeps independent
 * edits of one meta-training batch apart) and its token rows. The caller owns the result.
 */
export function captureEditorFactors(params: Readonly<Params>, config: GPT2Config, batch: Batch, editor: Editor, callGroup?: readonly number[]): Factors {
  return captureFactors(params, config, batch, editor.config.innerParams, lossGroups(editor.config, batch.inputIds.shape[0], callGroup), "structural", editor.config.rows);
}

/** The request (batch row) of every kept factor row of `name`. */
export function rowRequests(factors: Factors, name: string): number[] {
  return factors.rows[name].map((r) => Math.floor(r / factors.seqLen));
}

/**
 * Inputs an edit call must not move (preserve.ts), per edited weight [n, d_in], and the constraint's
 * β: `inputs` for every call, or `byCall` (call -> inputs) when one batch holds several calls.
 */
export interface PreservedInputs {
  inputs?: Record<string, tf.Tensor2D>;
  byCall?: ReadonlyMap<number, Record<string, tf.Tensor2D>>;
  beta: number;
}

/**
 * Normalise every edited weight's factors and run the editor (one pass per shared net):
 * name -> {ũ [Nk, d_in], δ̃ [Nk, d_out]}; with key preconditioning ũ is the key (ũ ∘ σ) P, and
 * with batch decorrelation each edit call's keys are decorrelated from its own inputs (precond.ts).
 * With `preserved` (edit-time preservation, preserve.ts) every key's response on those inputs is
 * removed while its responses on the call's own target inputs stay.
 * `rowCall` (flattened batch row -> edit call) tells the calls apart when one batch holds several
 * independent edits (meta-training); without it the factors are one call. Differentiable in φ.
 */
export function transformFactors(editor: Editor, factors: Factors, rowCall?: (row: number) => number, preserved?: PreservedInputs): Transformed {
  const normed: Record<string, { uBar: tf.Tensor2D; deltaBar: tf.Tensor2D }> = {};
  for (const name of editor.config.innerParams) {
    const u = factors.u[name];
    const delta = factors.delta[name];
    if (!u || !delta) throw new Error(`no factors captured for "${name}"`);
    normed[name] = editor.config.norm ? normalizeFactors(netFor(editor, name).net.stats, u, delta) : { uBar: u, deltaBar: delta };
  }
  const out = applyEditorAll(editor, normed);
  if (!editor.precond && !preserved) return out;
  const target = editor.config.batchPrecond || preserved ? new Set(factors.targetRows) : null;
  for (const name of editor.config.innerParams) {
    const { uTilde } = out[name];
    const P = editor.precond?.[name] ?? null;
    const scaled = P && editor.config.norm ? tf.mul(uTilde, inputScale(netFor(editor, name).net.stats)) : uTilde;
    const of = preserved && ((call: number) => (preserved.byCall ? preserved.byCall.get(call)?.[name] : preserved.inputs?.[name]));
    const keys = target ? callKeys(scaled as tf.Tensor2D, factors, name, target, P, editor.config.batchPrecond, of && { of, beta: preserved!.beta }, rowCall) : tf.matMul(scaled, P!);
    out[name] = { ...out[name], uTilde: keys as tf.Tensor2D }; // key = (ũ ∘ σ) P, or ũ corrected
  }
  return out;
}

/**
 * The keys of every edit call in `factors` (precond.ts `decorrelatedKeys`), rows in their original
 * order: with `batchBeta`, decorrelated from the call's other requests' target inputs; with
 * `preserved`, with no response on the preserved inputs; responses on the row's own request's
 * target inputs kept. A request is a batch row (flattened row / T); a call, `rowCall` of a row.
 * `target`: the factors' target rows.
 */
function callKeys(scaled: tf.Tensor2D, factors: Factors, name: string, target: ReadonlySet<number>, P: tf.Tensor2D | null, batchBeta: number | undefined, preserved: { of: (call: number) => tf.Tensor2D | undefined; beta: number } | undefined, rowCall?: (row: number) => number): tf.Tensor2D {
  const rows = factors.rows[name];
  const request = rowRequests(factors, name);
  const calls = new Map<number, number[]>(); // call -> kept-row positions, in order of first appearance
  rows.forEach((r, i) => {
    const c = rowCall ? rowCall(r) : 0;
    if (!calls.has(c)) calls.set(c, []);
    calls.get(c)!.push(i);
  });
  const order = [...calls.values()].flat();
  const parts = [...calls.entries()].map(([call, pos]) => {
    const kept = preserved?.of(call);
    const nKeep = kept ? kept.shape[0] : 0;
    const inputs = pos.filter((i) => target.has(rows[i]));
    const betas = [...inputs.map(() => batchBeta ?? preserved!.beta), ...new Array<number>(nKeep).fill(preserved?.beta ?? 1)];
    const other = tf.tensor2d(pos.flatMap((i) => [...inputs.map((j) => (batchBeta && request[i] !== request[j] ? 1 : 0)), ...new Array<number>(nKeep).fill(1)]), [pos.length, inputs.length + nKeep]);
    const S = selectRows(scaled, pos);
    const own = tf.gather(factors.u[name], tf.tensor1d(inputs, "int32")) as tf.Tensor2D;
    const V = nKeep ? (tf.concat([own, kept!]) as tf.Tensor2D) : own;
    return decorrelatedKeys(S, V, P, betas, other);
  });
  const keys = parts.length === 1 ? parts[0] : (tf.concat(parts) as tf.Tensor2D);
  if (order.every((p, i) => p === i)) return keys;
  const inverse = new Array<number>(order.length);
  order.forEach((p, i) => (inverse[p] = i));
  return selectRows(keys, inverse);
}

/**
 * Rows `pos` of x [N, d], differentiably: a slice when they are consecutive, else a one-hot matMul
 * (tf.gather's gradient needs UnsortedSegmentSum, which the wasm backend lacks). @returns [pos.length, d]
 */
function selectRows(x: tf.Tensor2D, pos: readonly number[]): tf.Tensor2D {
  if (pos.every((p, i) => p === pos[0] + i)) return tf.slice(x, [pos[0], 0], [pos.length, x.shape[1]]);
  const N = x.shape[0];
  const onehot = new Float32Array(pos.length * N);
  pos.forEach((p, i) => (onehot[i * N + p] = 1));
  return tf.matMul(tf.tensor2d(onehot, [pos.length, N]), x);
}

/**
 * The same edit as `editedWeights`, as low-rank factors for `gptForward({lowRank})`:
 * α·∇̃W = (αŨ)ᵀ Δ̃, so left = αŨ [Nk, d_in] and right = Δ̃ [Nk, d_out]. Differentiable in φ and α.
 * Pair it with `exampleMask` to run many examples, each with its own edit, in one forward.
 */
export function lowRankEdits(editor: Editor, factors: Factors, lrScale = 1, rowCall?: (row: number) => number, preserved?: PreservedInputs): Record<string, { left: tf.Tensor2D; right: tf.Tensor2D }> {
  return lowRankOf(editor, transformFactors(editor, factors, rowCall, preserved), lrScale);
}

/** `lowRankEdits` from the editor's output `transformed` (right is its δ̃, not a copy). */
function lowRankOf(editor: Editor, transformed: Transformed, lrScale: number): Record<string, { left: tf.Tensor2D; right: tf.Tensor2D }> {
  const out: Record<string, { left: tf.Tensor2D; right: tf.Tensor2D }> = {};
  for (const name of editor.config.innerParams) {
    const { uTilde, deltaTilde } = transformed[name];
    out[name] = { left: tf.mul(tf.mul(editor.editLrs[name], lrScale), uTilde) as tf.Tensor2D, right: deltaTilde };
  }
  return out;
}

/** Low-rank updates with the request (batch row) of each of their rows, as calibrate.ts takes them. */
export function withRequests(factors: Factors, updates: Record<string, { left: tf.Tensor2D; right: tf.Tensor2D }>): Record<string, RequestUpdate> {
  return Object.fromEntries(Object.entries(updates).map(([name, u]) => [name, { ...u, request: rowRequests(factors, name) }]));
}

/**
 * [N, M] 0/1 mask: token row r may use update row j when both belong to the same example.
 * @param tokenExample example id per token row (N) @param factorExample example id per update row (M)
 */
export function exampleMask(tokenExample: readonly number[], factorExample: readonly number[]): tf.Tensor2D {
  return tf.tensor2d(tokenExample.flatMap((e) => factorExample.map((f) => (f === e ? 1 : 0))), [tokenExample.length, factorExample.length]);
}

/** Merge a batch of factors into the editor's statistics (meta-training only). */
export function updateEditorStats(editor: Editor, factors: Factors): void {
  for (const name of editor.config.innerParams) updateStats(netFor(editor, name).net.stats, factors.u[name], factors.delta[name]);
}

export interface EditLayerInfo {
  name: string;
  /** Token rows that fed the editor. */
  rows: number;
  /** α_ℓ (times lrScale; a calibrated edit's per-request steps are in `EditInfo.calibration`). */
  editLr: number;
  /** ‖W' − W‖_F and ‖W‖_F. */
  updateNorm: number;
  weightNorm: number;
}

export interface EditInfo {
  requests: EditRequest[];
  /** Edit loss before the edit (mean NLL over all target tokens). */
  lossBefore: number;
  layers: EditLayerInfo[];
  latencyMs: number;
  /** Edit-time step calibration (calibrate.ts), when asked for. */
  calibration?: CalibrationResult;
  /** With preservation asked for: whether the preserved update was applied (else the plain calibrated one). */
  preserved?: boolean;
}

export interface EditResult {
  /** Full parameter record of the edited model (edited weights new, the rest shared with the base). */
  params: Params;
  /** The new tensors only (owned by this result). */
  edited: Record<string, tf.Tensor2D>;
  info: EditInfo;
}

const normCache = new WeakMap<tf.Tensor, number>();
/** ‖W‖_F, computed once per weight tensor (base weights are immutable). */
function weightNorm(w: tf.Tensor): number {
  let n = normCache.get(w);
  if (n === undefined) {
    const t = tf.norm(w);
    n = t.dataSync()[0];
    t.dispose();
    normCache.set(w, n);
  }
  return n;
}

export function validateRequests(requests: readonly EditRequest[]): void {
  if (!Array.isArray(requests) || requests.length === 0) throw new Error("no edit requests given");
  requests.forEach((r, i) => {
    if (!r || typeof r.prompt !== "string" || !r.prompt.trim()) throw new Error(`edit request ${i}: prompt is empty`);
    if (typeof r.target !== "string" || !r.target.trim()) throw new Error(`edit request ${i} ("${r.prompt}"): target is empty`);
  });
}

/** Per-request calibrated steps (calibrate.ts) for the editor's output `transformed` on `batch`. */
function calibrate(model: ModelView, editor: Editor, factors: Factors, transformed: Transformed, batch: Batch, lrScale: number, c: StepCalibration): CalibrationResult {
  const update = withRequests(factors, tf.tidy(() => lowRankOf(editor, transformed, lrScale))); // left = α·ũ [Nk, d_in], right = δ̃ [Nk, d_out]
  try {
    return calibrateSteps(model, update, batch, c);
  } finally {
    tf.dispose(Object.values(update).map((u) => u.left));
  }
}

/** The preserved inputs of an edit call: the set's inputs whose answer is one of the call's old answers (preserve.ts). */
function preservedFor(model: ModelView, batch: Batch, p: Preservation, names: readonly string[]): { inputs: Record<string, tf.Tensor2D>; beta: number } {
  const logits = tf.tidy(() => gptForward(model.params, model.config, batch.inputIds, { attentionMask: batch.attentionMask }).logits);
  const old = firstTargetArgmax(logits, batch.labels.arraySync() as number[][]);
  logits.dispose();
  return { beta: p.beta, inputs: preservedInputsAt(p.set, preservedRows(p.set, old), names) };
}

/**
 * The preserved update of an edit call and its calibration (preserve.ts), or null when some request
 * has no right step up to `p.maxStep` (the constraint removed what the edit needs).
 */
function preservedUpdate(model: ModelView, editor: Editor, factors: Factors, batch: Batch, lrScale: number, p: Preservation): { transformed: Transformed; calibration: CalibrationResult } | null {
  const kept = preservedFor(model, batch, p, editor.config.innerParams);
  let transformed: Transformed;
  try {
    transformed = tf.tidy(() => transformFactors(editor, factors, undefined, kept));
  } finally {
    tf.dispose(Object.values(kept.inputs));
  }
  let used = false;
  try {
    const calibration = calibrate(model, editor, factors, transformed, batch, lrScale, { margin: p.margin, maxScale: p.maxStep / p.margin });
    used = calibration.found.every(Boolean);
    return used ? { transformed, calibration } : null;
  } finally {
    if (!used) tf.dispose(Object.values(transformed).flatMap((t) => [t.uTilde, t.deltaTilde]));
  }
}

/**
 * Edit a model with MEND. The editor's statistics are frozen (test-time edit). `lrScale` multiplies
 * every α; `calibrate` scales each request's share of the update to its calibrated step
 * (calibrate.ts, our deviation; null/absent = the official step); `preserve` (needs `calibrate`)
 * first tries the update kept off the inputs that give the edit's old answer (preserve.ts, our
 * deviation; `info.preserved` says whether it was applied). The caller owns `result.edited`
 * (free with `disposeEdit`); the base params are untouched.
 */
export function mendEdit(model: ModelView, editor: Editor, requests: readonly EditRequest[], opts: { lrScale?: number; calibrate?: StepCalibration | null; preserve?: Preservation | null } = {}): EditResult {
  validateRequests(requests);
  if (opts.calibrate) validateCalibration(opts.calibrate);
  if (opts.preserve) {
    if (!opts.calibrate) throw new Error("preservation needs step calibration (the calibration of the edit it falls back to)");
    validatePreservation(opts.preserve, editor.config.innerParams);
  }
  const t0 = performance.now();
  const batch = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  const lrScale = opts.lrScale ?? 1;
  let factors: Factors | undefined;
  let transformed: Transformed | undefined;
  let calibration: CalibrationResult | undefined;
  let preserved = false;
  try {
    factors = captureEditorFactors(model.params, model.config, batch, editor);
    const p = opts.preserve ? preservedUpdate(model, editor, factors, batch, lrScale, opts.preserve) : null;
    if (p) {
      ({ transformed, calibration } = p);
      preserved = true;
    } else {
      transformed = tf.tidy(() => transformFactors(editor, factors!));
      if (opts.calibrate) calibration = calibrate(model, editor, factors, transformed, batch, lrScale, opts.calibrate);
    }
  } catch (e) {
    if (factors) disposeFactors(factors);
    if (transformed) tf.dispose(Object.values(transformed).flatMap((t) => [t.uTilde, t.deltaTilde]));
    throw e;
  } finally {
    disposeBatch(batch);
  }
  const t = transformed;
  const f = factors;
  const rowScales = (name: string) => tf.tensor2d(rowRequests(f, name).map((b) => calibration!.scales[b]), [f.rows[name].length, 1]); // [Nk, 1]
  // Few, cheap ops: on wasm an edit of this size is bound by the number of kernels, not by FLOPs.
  const [edited, sq] = tf.tidy(() => {
    const out: Record<string, tf.Tensor2D> = {};
    const norms: tf.Tensor[] = [];
    for (const name of editor.config.innerParams) {
      const { deltaTilde } = t[name];
      const uTilde = calibration ? (tf.mul(t[name].uTilde, rowScales(name)) as tf.Tensor2D) : t[name].uTilde; // each request's rows times its step
      const a = lrScale === 1 ? editor.editLrs[name] : tf.mul(editor.editLrs[name], lrScale);
      const update = tf.mul(a, pseudoGradient(uTilde, deltaTilde)); // α ∇̃W [d_in, d_out]
      out[name] = tf.add(model.params[name], update) as tf.Tensor2D;
      norms.push(tf.sum(tf.square(update)), a); // ‖α ∇̃W‖²_F, α
    }
    return [out, tf.stack(norms)] as const;
  });
  tf.dispose(Object.values(t).flatMap((x) => [x.uTilde, x.deltaTilde]));
  const vals = sq.dataSync();
  sq.dispose();
  const layers = editor.config.innerParams.map((name, i) => ({
    name,
    rows: f.rows[name].length,
    editLr: vals[2 * i + 1],
    updateNorm: Math.sqrt(Math.max(0, vals[2 * i])),
    weightNorm: weightNorm(model.params[name]),
  }));
  const lossBefore = factors.loss;
  disposeFactors(factors);
  for (const l of layers) {
    if (!Number.isFinite(l.updateNorm)) {
      tf.dispose(Object.values(edited));
      throw new Error(`the edit of "${l.name}" is not finite (NaN/Inf): check the editor checkpoint and its statistics`);
    }
  }
  return {
    params: { ...model.params, ...edited },
    edited,
    info: { requests: [...requests], lossBefore, layers, latencyMs: performance.now() - t0, ...(calibration ? { calibration } : {}), ...(opts.preserve ? { preserved } : {}) },
  };
}

export function disposeEdit(r: EditResult): void {
  tf.dispose(Object.values(r.edited));
}
