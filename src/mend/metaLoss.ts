/**
 * MEND's meta-training objective (MEND Eq. 4; mend-spec §5.2), the one implementation that
 * training optimises and validation reports:
 *
 *     L = c_edit · L_edit + c_loc · L_loc
 *     L_edit = −(1/|y'|) Σ log p_θ'(y'_e | x'_e)          (target tokens of the equivalent input)
 *     L_loc  = mean over non-pad positions of KL( p_θ(·|x_loc) ‖ p_θ'(·|x_loc) )
 *
 * θ' = θ + α Σ ũ δ̃ᵀ are the edited weights (update.ts); the pre-edit locality logits are constants,
 * and u, δ are constants (first order, as the official code). A batch holds several examples, each
 * with its own edit: every edited layer adds its low-rank update through a mask that lets a token
 * row use only its own example's update rows, so one forward per text kind serves the whole batch
 * (identical maths to running each example with its W', tested). One example is a batch of one
 * group of one.
 *
 * Examples are grouped into edit calls (metaExamples.ts); `weighting` "call" (default) averages the
 * per-edit losses within a call, then over calls (every call counts once, as each official example
 * does); "edit" averages over all edits. With calls of one edit both are the official mean.
 * Defaults c_edit = 0.1, c_loc = 1.0 (the paper's and official values).
 * Shapes: R edit rows, L locality rows, T time, V vocab.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, encodeExamples, toBatch } from "../world/batch";
import { GPT2Config } from "../model/config";
import { gptForward, Params } from "../model/gpt";
import { tokenKl, tokenNll } from "../model/loss";
import { ModelView } from "../model/score";
import { captureEditorFactors, exampleMask, lowRankEdits, rowRequests, updateEditorStats } from "./edit";
import { Editor } from "./editor";
import { disposeFactors, Factors } from "./factor";
import { MetaExample } from "./metaExamples";

export interface MetaLossConfig {
  cEdit: number;
  cLoc: number;
  /** How calls of different sizes are averaged: "call" (default: each call counts once) or "edit". */
  weighting?: "call" | "edit";
}

export const DEFAULT_META_LOSS_CONFIG: Readonly<MetaLossConfig> = Object.freeze({ cEdit: 0.1, cLoc: 1.0 });

/** A batch of groups (edit calls) as tensors, with each row's loss weight. */
export interface EncodedMeta {
  inner: Batch;
  outer: Batch;
  loc: Batch;
  outerLabels: number[][];
  outerPos: number[][];
  locPos: number[][];
  /** Group (= one edit call) of each edit row; rows are aligned across inner/outer. */
  group: number[];
  /** [R] loss weight of each edit row: 1 / (#groups · #edits in its group) ("call") or 1 / #edits ("edit"). The weights sum to 1. */
  weight: tf.Tensor1D;
  /** Example (edit row) that each locality row belongs to; one row per example unless `extraLoc`. */
  locOwner: number[];
  /** [L] weight of each locality row: its example's weight shared among the example's locality rows. */
  locWeight: tf.Tensor1D;
}

/** Encode groups of meta-examples. The caller owns the result (`disposeEncodedMeta`). */
export function encodeMeta(m: ModelView, groups: readonly (readonly MetaExample[])[], weighting: MetaLossConfig["weighting"] = "call"): EncodedMeta {
  const T = m.config.n_positions;
  const exs = groups.flat();
  const group = groups.flatMap((g, i) => g.map(() => i));
  const a = encodeExamples(m.tokenizer, exs.map((e) => e.editInner), "target", T);
  const o = encodeExamples(m.tokenizer, exs.map((e) => e.editOuter), "target", T);
  const locs = exs.map((e) => [e.loc, ...(e.extraLoc ?? [])]);
  const locOwner = locs.flatMap((ls, i) => ls.map(() => i));
  const l = encodeExamples(m.tokenizer, locs.flat(), "target", T);
  const w = groups.flatMap((g) => g.map(() => (weighting === "edit" ? 1 / exs.length : 1 / (groups.length * g.length))));
  const weight = tf.tensor1d(w);
  const locWeight = tf.tensor1d(locOwner.map((i) => w[i] / locs[i].length));
  return { inner: toBatch(a), outer: toBatch(o), loc: toBatch(l), outerLabels: o.labels, outerPos: o.targetPositions, locPos: l.targetPositions, group, weight, locOwner, locWeight };
}

export function disposeEncodedMeta(e: EncodedMeta): void {
  disposeBatch(e.inner);
  disposeBatch(e.outer);
  disposeBatch(e.loc);
  e.weight.dispose();
  e.locWeight.dispose();
}

/** Pre-edit logits of the locality batch (constants for L_loc). Caller owns the result. @returns [L, T, V] */
export function preEditLogits(params: Readonly<Params>, config: GPT2Config, batch: Batch): tf.Tensor3D {
  return tf.tidy(() => gptForward(params, config, batch.inputIds, { attentionMask: batch.attentionMask }).logits);
}

/** Group id of each token row of a [R, T] batch (rows are flattened batch-major). */
const rowGroups = (b: Batch, group: readonly number[]): number[] => Array.from({ length: b.inputIds.size }, (_, r) => group[Math.floor(r / b.inputIds.shape[1])]);

/**
 * The meta-loss of a batch of groups, each group with its own edit (from `factors` of `e.inner`).
 * Differentiable in the editor's φ and α. @param preLoc [L, T, V] pre-edit locality logits.
 * @returns the weighted L_edit, L_loc, the total, and the edited logits [R, T, V] and [L, T, V].
 */
export function metaLoss(m: ModelView, editor: Editor, e: EncodedMeta, factors: Factors, preLoc: tf.Tensor3D, c: MetaLossConfig) {
  const Ti = e.inner.inputIds.shape[1];
  const updates = lowRankEdits(editor, factors, 1, (r) => e.group[Math.floor(r / Ti)]);
  const forward = (b: Batch, textGroup: readonly number[]) => {
    const tokenGroup = rowGroups(b, textGroup);
    const lowRank = Object.fromEntries(Object.entries(updates).map(([n, u]) => [n, { ...u, mask: exampleMask(tokenGroup, rowRequests(factors, n).map((q) => e.group[q])) }]));
    return gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask, lowRank }).logits;
  };
  const outerLogits = forward(e.outer, e.group);
  const locLogits = forward(e.loc, e.locOwner.map((i) => e.group[i]));
  const outerMask = tf.cast(tf.greaterEqual(e.outer.labels, 0), "float32");
  const nllRows = tf.div(tf.sum(tokenNll(outerLogits, e.outer.labels), 1), tf.maximum(tf.sum(outerMask, 1), 1)); // [R] token-mean NLL of each x'_e
  const klRows = tf.div(tf.sum(tf.mul(tokenKl(preLoc, locLogits), e.loc.attentionMask), 1), tf.sum(e.loc.attentionMask, 1)); // [L] position-mean KL of each x_loc
  const lEdit = tf.sum(tf.mul(nllRows, e.weight)) as tf.Scalar;
  const lLoc = tf.sum(tf.mul(klRows, e.locWeight)) as tf.Scalar;
  const total = tf.add(tf.mul(c.cEdit, lEdit), tf.mul(c.cLoc, lLoc)) as tf.Scalar;
  return { total, lEdit, lLoc, outerLogits, locLogits };
}

export interface ExampleResult {
  /** The batch's weighted L_edit and L_loc (the same for every example of one batch). */
  lEdit: number;
  lLoc: number;
  /** Edited model gets every target token of x'_e right (the paper's edit success). */
  editAcc: number;
  /** Fraction of the locality answer's tokens whose argmax is unchanged by the edit. */
  locUnchanged: number;
}

/** Per-example metrics from argmax tokens [K, T]. */
function summarise(e: EncodedMeta, outerArgmax: number[][], locPre: number[][], locPost: number[][], lEdit: number, lLoc: number): ExampleResult[] {
  return e.outerPos.map((pos, i) => ({
    lEdit,
    lLoc,
    editAcc: pos.every((t) => outerArgmax[i][t] === e.outerLabels[i][t]) ? 1 : 0,
    locUnchanged: locFraction(e, i, locPre, locPost),
  }));
}

/** Fraction of example i's locality answer tokens (over all its locality rows) whose argmax is unchanged. */
function locFraction(e: EncodedMeta, i: number, locPre: number[][], locPost: number[][]): number {
  let same = 0, n = 0;
  e.locOwner.forEach((owner, r) => {
    if (owner !== i) return;
    for (const t of e.locPos[r]) { n++; if (locPre[r][t] === locPost[r][t]) same++; }
  });
  return same / n;
}

/**
 * One meta-training batch: statistics update (if `train`, before normalising, as the official
 * code), the meta-loss and its gradients w.r.t. `vars` (checkpoint name -> variable). Returns the
 * gradients by checkpoint name (caller owns them; null when not finite: the official code skips
 * such examples), their global norm and per-example metrics.
 */
export function metaBatchGrads(
  m: ModelView,
  editor: Editor,
  groups: readonly (readonly MetaExample[])[],
  vars: Record<string, tf.Variable>,
  c: MetaLossConfig,
  train = true,
): { grads: Record<string, tf.Tensor> | null; gradNorm: number; results: ExampleResult[] } {
  const e = encodeMeta(m, groups, c.weighting);
  const factors = captureEditorFactors(m.params, m.config, e.inner, editor, e.group);
  try {
    if (train && editor.config.norm) updateEditorStats(editor, factors);
    const pre = preEditLogits(m.params, m.config, e.loc);
    const stash: tf.Tensor[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const r = metaLoss(m, editor, e, factors, pre, c);
      stash.push(tf.keep(tf.stack([r.lEdit, r.lLoc])), tf.keep(tf.argMax(r.outerLogits, -1)), tf.keep(tf.argMax(r.locLogits, -1)));
      return r.total;
    }, Object.values(vars));
    const locPre = tf.tidy(() => tf.argMax(pre, -1));
    const [losses, outerAm, locPost] = stash;
    const [lEdit, lLoc] = losses.dataSync();
    const results = summarise(e, outerAm.arraySync() as number[][], locPre.arraySync() as number[][], locPost.arraySync() as number[][], lEdit, lLoc);
    const sq = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
    const gradNorm = Math.sqrt(sq.dataSync()[0]);
    const finite = Number.isFinite(gradNorm) && Number.isFinite(value.dataSync()[0]);
    tf.dispose([value, pre, locPre, sq, ...stash]);
    if (!finite) {
      tf.dispose(Object.values(grads));
      return { grads: null, gradNorm, results };
    }
    // variableGrads keys grads by the variables' engine names; map back to checkpoint names.
    const byName: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(vars)) byName[k] = grads[v.name];
    return { grads: byName, gradNorm, results };
  } finally {
    disposeFactors(factors);
    disposeEncodedMeta(e);
  }
}

/** The same meta-loss without gradients (validation): same metrics, statistics frozen. */
export function metaBatchEval(m: ModelView, editor: Editor, groups: readonly (readonly MetaExample[])[], c: MetaLossConfig): ExampleResult[] {
  const e = encodeMeta(m, groups, c.weighting);
  const factors = captureEditorFactors(m.params, m.config, e.inner, editor, e.group);
  try {
    const out = tf.tidy(() => {
      const pre = preEditLogits(m.params, m.config, e.loc);
      const r = metaLoss(m, editor, e, factors, pre, c);
      return [tf.stack([r.lEdit, r.lLoc]), tf.argMax(r.outerLogits, -1), tf.argMax(pre, -1), tf.argMax(r.locLogits, -1)];
    });
    const [l, oa, lp, lq] = out;
    const [lEdit, lLoc] = l.dataSync();
    const res = summarise(e, oa.arraySync() as number[][], lp.arraySync() as number[][], lq.arraySync() as number[][], lEdit, lLoc);
    tf.dispose(out);
    return res;
  } finally {
    disposeFactors(factors);
    disposeEncodedMeta(e);
  }
}

/** The meta-loss of one example (one edit call of one edit), without gradients: L_edit, L_loc and the total. */
export function exampleMetaLoss(m: ModelView, editor: Editor, example: MetaExample, c: MetaLossConfig = DEFAULT_META_LOSS_CONFIG): { lEdit: number; lLoc: number; total: number } {
  const [r] = metaBatchEval(m, editor, [[example]], c);
  return { lEdit: r.lEdit, lLoc: r.lLoc, total: c.cEdit * r.lEdit + c.cLoc * r.lLoc };
}
