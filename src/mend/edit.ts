/**
 * Applying MEND: the edit API (mend-spec §2.2, §3.6, §5.4).
 *
 *   1. one forward/backward pass of the base model on the edit example(s) gives u_ℓ, δ_ℓ (factor.ts);
 *   2. per edited weight W_ℓ: normalise (stats.ts), run the editor (editor.ts): ũ, δ̃;
 *   3. ΔW_ℓ = α_ℓ Σ ũ δ̃ᵀ (update.ts; the official code *adds* it, the paper writes W − α∇̃W).
 *
 * `mendEdit` returns the update as a value: per edited weight α_ℓ, the keys ũ, the values δ̃ and the
 * request each row came from (model/weightUpdate.ts). It forms no weight: `applyUpdates(model,
 * [result.update])` (model/paramsModel.ts) gives the edited model W + ΔW, sharing every other
 * weight with `model`, which is never changed. k requests in one call are one batched edit; editing
 * the edited model again gives sequential edits. As in the official code, the edit loss of a call is
 * the mean NLL over all target tokens of all its requests (so each δ carries a 1/#tokens factor).
 * An editor's hooks (hooks.ts) may change the rows, the loss grouping and the keys; at edit time a
 * `stepScale` may scale each request's share of the update and a `rule` may replace the update.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, makeBatch } from "../model/batch";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { Editor, applyEditorAll, assertLive, netFor } from "./editor";
import { captureFactors, disposeFactors, Factors } from "./factor";
import { GPT2Config } from "../model/config";
import { Params } from "../model/gpt";
import type { MethodState } from "../model/languageModel";
import { ModelView } from "../model/paramsModel";
import { LowRankDelta, updateTensors } from "../model/weightUpdate";
import { normalizeFactors, updateStats } from "./stats";
import { LowRankUpdate, StepScale, StepScales, UpdateRule } from "./hooks";
import { denseUpdate, lowRankFactors, Transformed, Update } from "./update";

export type { EditRequest };

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
  for (const name of editor.config.innerParams) out[name] = { ...out[name], uTilde: keys(out[name].uTilde, { name, stats: editor.config.norm ? netFor(editor, name).net.stats : null, factors, rowCall }) };
  return out;
}

/**
 * The updates of every edited weight from the editor's output, differentiably. `lrScale` multiplies
 * every α (test-time `lr_scale` of ROME/EasyEdit, 1 = official); `rowScale` name -> [Nk, 1].
 */
export function updatesOf(editor: Editor, transformed: Transformed, lrScale = 1, rowScale?: Readonly<Record<string, tf.Tensor2D>>): Record<string, Update> {
  const out: Record<string, Update> = {};
  for (const name of editor.config.innerParams) {
    const { uTilde, deltaTilde } = transformed[name];
    const s = rowScale?.[name];
    out[name] = {
      alpha: lrScale === 1 ? editor.editLrs[name] : tf.mul(editor.editLrs[name], lrScale),
      keys: s ? (tf.mul(uTilde, s) as tf.Tensor2D) : uTilde,
      values: deltaTilde,
    };
  }
  return out;
}

/**
 * The differentiable core of one edit call: W' = W + lrScale·α·Σ ũ δ̃ᵀ for every edited weight.
 * Use inside a gradient closure or `tf.tidy`. @returns name -> W' [d_in, d_out]
 */
export function editedWeights(params: Readonly<Params>, editor: Editor, factors: Factors, lrScale = 1): Record<string, tf.Tensor2D> {
  const updates = updatesOf(editor, transformFactors(editor, factors), lrScale);
  return Object.fromEntries(Object.entries(updates).map(([name, u]) => [name, tf.add(params[name], denseUpdate(u)) as tf.Tensor2D]));
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
  /** ‖ΔW‖_F and ‖W‖_F. */
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
  /**
   * ΔW of every edited weight as a low-rank value: α, keys (ũ, times the request's step multiple),
   * values δ̃ and each row's request. Owned by the result (`disposeEdit`).
   */
  update: LowRankUpdate;
  /** The state an update rule returned, if any (owned by the caller: the edited model carries it). */
  state?: MethodState;
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

/**
 * The update of `transformed` as values: α read out (times lrScale), keys ũ, or ũ times each row's
 * request step (`scales`, per request: ũ is then freed), values δ̃. It holds the editor's tensors.
 */
function updateValue(editor: Editor, factors: Factors, transformed: Transformed, lrScale: number, scales?: readonly number[]): LowRankUpdate {
  const names = editor.config.innerParams;
  const alphas = tf.tidy(() => tf.stack(names.map((n) => tf.mul(editor.editLrs[n], lrScale))).dataSync());
  const out: Record<string, LowRankDelta> = {};
  names.forEach((name, i) => {
    const requests = rowRequests(factors, name);
    const { uTilde, deltaTilde } = transformed[name];
    const keys = scales ? tf.tidy(() => tf.mul(uTilde, tf.tensor2d(requests.map((b) => scales[b]), [requests.length, 1])) as tf.Tensor2D) : uTilde;
    if (keys !== uTilde) uTilde.dispose();
    out[name] = { alpha: alphas[i], keys, values: deltaTilde, requests };
  });
  return out;
}

/** ‖α KᵀV‖_F² = α² Σ (K Kᵀ) ⊙ (V Vᵀ) of every weight, without forming ΔW. */
function lowRankNormsSq(update: LowRankUpdate, names: readonly string[]): Float32Array {
  const sq = tf.tidy(() => tf.stack(names.map((n) => {
    const { alpha, keys, values } = update[n];
    return tf.mul(alpha * alpha, tf.sum(tf.mul(tf.matMul(keys, tf.transpose(keys)), tf.matMul(values, tf.transpose(values)))));
  })));
  const v = sq.dataSync() as Float32Array;
  sq.dispose();
  return v;
}

/**
 * Edit a model with MEND. The editor's statistics are frozen (test-time edit). `lrScale` multiplies
 * every α (1 = official); `stepScale` multiplies each request's share of the update by the multiple
 * it finds (absent = the official step); `rule` replaces the update (absent = official), reading
 * `state`, what it returned with the previous edit. The caller owns `result.update` (free it with
 * `disposeEdit`) and `result.state`; the model is untouched.
 */
export function mendEdit(model: ModelView, editor: Editor, requests: readonly EditRequest[], opts: { lrScale?: number; stepScale?: StepScale | null; rule?: UpdateRule; state?: MethodState } = {}): EditResult {
  validateRequests(requests);
  assertLive(editor);
  const lrScale = opts.lrScale ?? 1;
  if (!(Number.isFinite(lrScale) && lrScale > 0)) throw new Error(`lrScale must be a positive number, got ${lrScale}`);
  const t0 = performance.now();
  const batch = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  let factors: Factors | undefined;
  let transformed: Transformed | undefined;
  let update: LowRankUpdate | undefined;
  let steps: StepScales | undefined;
  let state: MethodState | undefined;
  try {
    factors = captureEditorFactors(model.params, model.config, batch, editor);
    const f = factors;
    transformed = tf.tidy(() => transformFactors(editor, f));
    if (opts.stepScale) steps = opts.stepScale(model, updateValue(editor, f, transformed, lrScale), batch); // the official step's update, sharing the editor's output
    update = updateValue(editor, f, transformed, lrScale, steps?.scales);
    transformed = undefined; // its tensors now belong to the update
    if (opts.rule) {
      const fromRule = opts.rule({ model, factors: f, transformed: Object.fromEntries(Object.entries(update).map(([n, d]) => [n, { uTilde: d.keys, deltaTilde: d.values }])), update, state: opts.state });
      update = fromRule.update;
      state = fromRule.state;
    }
  } catch (e) {
    if (factors) disposeFactors(factors);
    if (transformed) tf.dispose(Object.values(transformed).flatMap((t) => [t.uTilde, t.deltaTilde]));
    if (update) tf.dispose(updateTensors(update));
    throw e;
  } finally {
    disposeBatch(batch);
  }
  const names = editor.config.innerParams;
  const sq = lowRankNormsSq(update, names);
  const layers = names.map((name, i) => ({
    name,
    rows: factors!.rows[name].length,
    editLr: update![name].alpha,
    updateNorm: Math.sqrt(Math.max(0, sq[i])),
    weightNorm: weightNorm(model.params[name]),
  }));
  const lossBefore = factors.loss;
  disposeFactors(factors);
  const bad = layers.find((l) => !Number.isFinite(l.updateNorm));
  if (bad) {
    tf.dispose(updateTensors(update));
    throw new Error(`the edit of "${bad.name}" is not finite (NaN/Inf): check the editor checkpoint and its statistics`);
  }
  return {
    update,
    ...(state ? { state } : {}),
    info: { requests: [...requests], lossBefore, layers, latencyMs: performance.now() - t0, ...(steps ? { stepScales: steps } : {}) },
  };
}

/** Frees the edit's update (not the state, which the edited model owns). */
export function disposeEdit(r: EditResult): void {
  tf.dispose(updateTensors(r.update));
}
