/**
 * Applying MEND: the edit API (mend-spec §2.2, §3.6, §5.4).
 *
 *   1. one forward/backward pass of the base model on the edit example(s) gives u_ℓ, δ_ℓ (factor.ts);
 *   2. per edited weight W_ℓ: normalise (stats.ts), run the editor (editor.ts): ũ, δ̃;
 *   3. W'_ℓ = W_ℓ + α_ℓ Σ ũ δ̃ᵀ (update.ts; the official code *adds*, the paper writes W − α∇̃W).
 *
 * `mendEdit` is pure: it returns a new parameter record in which only the edited weights are new
 * tensors (the rest are the base's, shared by reference) and never mutates the base. k requests in
 * one call are one batched edit. Editing the returned model again gives sequential edits. As in the
 * official code, the edit loss of a call is the mean NLL over all target tokens of all its requests
 * (so each δ carries a 1/#tokens factor). An editor's hooks (hooks.ts) may change the rows, the
 * loss grouping and the keys; a `stepScale` may scale each request's share of the update.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, makeBatch, TextExample } from "../world/batch";
import { Editor, applyEditorAll, assertLive, netFor } from "./editor";
import { captureFactors, disposeFactors, Factors } from "./factor";
import { GPT2Config } from "../model/config";
import { Params } from "../model/gpt";
import { ModelView } from "../model/score";
import { normalizeFactors, updateStats } from "./stats";
import { StepScale, StepScales } from "./hooks";
import { applyUpdates, lowRankFactors, RequestUpdate, Transformed, updatesOf } from "./update";

export type EditRequest = TextExample;

/**
 * The factors `editor` consumes for `batch`: its edited weights, its edit loss (one token-mean per
 * edit call unless the editor's `lossGroups` hook groups it otherwise; `callGroup`, batch row ->
 * edit call, keeps independent edits of one meta-training batch apart) and its token rows (the
 * official rows unless a `rows` hook chooses). The caller owns the result.
 */
export function captureEditorFactors(params: Readonly<Params>, config: GPT2Config, batch: Batch, editor: Editor, callGroup?: readonly number[]): Factors {
  const nRows = batch.inputIds.shape[0];
  const groups = editor.hooks?.lossGroups ? editor.hooks.lossGroups(nRows, callGroup) : callGroup;
  return captureFactors(params, config, batch, editor.config.innerParams, groups, "structural", editor.hooks?.rows);
}

/** The request (batch row) of every kept factor row of `name`. */
export function rowRequests(factors: Factors, name: string): number[] {
  return factors.rows[name].map((r) => Math.floor(r / factors.seqLen));
}

/**
 * Normalise every edited weight's factors and run the editor (one pass per shared net):
 * name -> {ũ [Nk, d_in], δ̃ [Nk, d_out]}. With a `keys` hook, ũ is replaced by the key it makes.
 * `rowCall` (flattened batch row -> edit call) tells the calls apart when one batch holds several
 * independent edits (meta-training); without it the factors are one call. Differentiable in φ.
 */
export function transformFactors(editor: Editor, factors: Factors, rowCall?: (row: number) => number): Transformed {
  assertLive(editor);
  const normed: Record<string, { uBar: tf.Tensor2D; deltaBar: tf.Tensor2D }> = {};
  for (const name of editor.config.innerParams) {
    const u = factors.u[name];
    const delta = factors.delta[name];
    if (!u || !delta) throw new Error(`no factors captured for "${name}"`);
    normed[name] = editor.config.norm ? normalizeFactors(netFor(editor, name).net.stats, u, delta) : { uBar: u, deltaBar: delta };
  }
  const out = applyEditorAll(editor, normed);
  const keys = editor.hooks?.keys;
  if (!keys) return out;
  for (const name of editor.config.innerParams) out[name] = { ...out[name], uTilde: keys(out[name].uTilde, { name, editor, factors, rowCall }) };
  return out;
}

/**
 * The differentiable core of one edit call: W' = W + lrScale·α·Σ ũ δ̃ᵀ for every edited weight.
 * Use inside a gradient closure or `tf.tidy`. @returns name -> W' [d_in, d_out]
 */
export function editedWeights(params: Readonly<Params>, editor: Editor, factors: Factors, lrScale = 1): Record<string, tf.Tensor2D> {
  return applyUpdates(params, updatesOf(editor, transformFactors(editor, factors), lrScale)).weights;
}

/**
 * The same edit as low-rank factors for `gptForward({ lowRank })`: α·∇̃W = (αŨ)ᵀ Δ̃, so
 * left = αŨ [Nk, d_in] and right = Δ̃ [Nk, d_out]. Differentiable in φ and α. Pair it with
 * `exampleMask` to run many examples, each with its own edit, in one forward.
 */
export function lowRankEdits(editor: Editor, factors: Factors, lrScale = 1, rowCall?: (row: number) => number): Record<string, { left: tf.Tensor2D; right: tf.Tensor2D }> {
  const updates = updatesOf(editor, transformFactors(editor, factors, rowCall), lrScale);
  return Object.fromEntries(Object.entries(updates).map(([name, u]) => [name, lowRankFactors(u)]));
}

/** Low-rank updates with the request (batch row) of each of their rows (the input of a `StepScale`). */
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
  /** α_ℓ (times lrScale; per-request step multiples are in `EditInfo.stepScales`). */
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
  /** The per-request step multiples, when a `stepScale` was given. */
  stepScales?: StepScales;
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

/** Throws on requests that cannot be edited: empty prompts or targets, one prompt with two targets. */
export function validateRequests(requests: readonly EditRequest[]): void {
  if (!Array.isArray(requests) || requests.length === 0) throw new Error("no edit requests given");
  const targetOf = new Map<string, string>();
  requests.forEach((r, i) => {
    if (!r || typeof r.prompt !== "string" || !r.prompt.trim()) throw new Error(`edit request ${i}: prompt is empty`);
    if (typeof r.target !== "string" || !r.target.trim()) throw new Error(`edit request ${i} ("${r.prompt}"): target is empty`);
    const key = r.prompt.normalize("NFC").trim();
    const other = targetOf.get(key);
    if (other !== undefined && other !== r.target.normalize("NFC").trim()) throw new Error(`edit requests ask for two targets for "${r.prompt}": "${other}" and "${r.target}"`);
    targetOf.set(key, r.target.normalize("NFC").trim());
  });
}

/** The step multiples of `stepScale` for the editor's output `transformed` on `batch`. */
function stepScalesOf(model: ModelView, editor: Editor, factors: Factors, transformed: Transformed, batch: Batch, lrScale: number, stepScale: StepScale): StepScales {
  const low = tf.tidy(() => Object.fromEntries(Object.entries(updatesOf(editor, transformed, lrScale)).map(([n, u]) => [n, lowRankFactors(u)])));
  try {
    return stepScale(model, withRequests(factors, low), batch);
  } finally {
    tf.dispose(Object.values(low).map((u) => u.left)); // right is the editor's δ̃, freed below
  }
}

/**
 * Edit a model with MEND. The editor's statistics are frozen (test-time edit). `lrScale` multiplies
 * every α (1 = official); `stepScale` multiplies each request's share of the update by the multiple
 * it finds (absent = the official step). The caller owns `result.edited` (free with `disposeEdit`);
 * the base params are untouched.
 */
export function mendEdit(model: ModelView, editor: Editor, requests: readonly EditRequest[], opts: { lrScale?: number; stepScale?: StepScale | null } = {}): EditResult {
  validateRequests(requests);
  assertLive(editor);
  const lrScale = opts.lrScale ?? 1;
  if (!(Number.isFinite(lrScale) && lrScale > 0)) throw new Error(`lrScale must be a positive number, got ${lrScale}`);
  const t0 = performance.now();
  const batch = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  let factors: Factors | undefined;
  let transformed: Transformed | undefined;
  let steps: StepScales | undefined;
  try {
    factors = captureEditorFactors(model.params, model.config, batch, editor);
    transformed = tf.tidy(() => transformFactors(editor, factors!));
    if (opts.stepScale) steps = stepScalesOf(model, editor, factors, transformed, batch, lrScale, opts.stepScale);
  } catch (e) {
    if (factors) disposeFactors(factors);
    if (transformed) tf.dispose(Object.values(transformed).flatMap((t) => [t.uTilde, t.deltaTilde]));
    throw e;
  } finally {
    disposeBatch(batch);
  }
  const t = transformed;
  const f = factors;
  // Few, cheap ops: on wasm an edit of this size is bound by the number of kernels, not by FLOPs.
  const [edited, sq] = tf.tidy(() => {
    const rowScale = steps && Object.fromEntries(editor.config.innerParams.map((n) => [n, tf.tensor2d(rowRequests(f, n).map((b) => steps!.scales[b]), [f.rows[n].length, 1])])); // [Nk, 1]
    const updates = updatesOf(editor, t, lrScale, rowScale);
    const { weights, deltas } = applyUpdates(model.params, updates);
    const norms = editor.config.innerParams.flatMap((n) => [tf.sum(tf.square(deltas[n])), updates[n].alpha]); // ‖ΔW‖²_F, α
    return [weights, tf.stack(norms)] as const;
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
    info: { requests: [...requests], lossBefore, layers, latencyMs: performance.now() - t0, ...(steps ? { stepScales: steps } : {}) },
  };
}

export function disposeEdit(r: EditResult): void {
  tf.dispose(Object.values(r.edited));
}
