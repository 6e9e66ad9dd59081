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
 * The update comes from an editor kind (editorKind.ts; MEND's by default): its low-rank rows, each
 * with the request it belongs to. A kind may start the edited forwards from its own parameters and
 * add loss terms of its own (`extraLoss`), which are added to the total.
 *
 * Examples are grouped into edit calls (metaExamples.ts): the per-edit losses are averaged within a
 * call, then over calls, so every call counts once, as each official example does (with calls of
 * one edit this is the official mean).
 * Defaults c_edit = 0.1, c_loc = 1.0 (the paper's and official values).
 * Shapes: R edit rows, L locality rows, T time, V vocab.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, encodeExamples, toBatch } from "../model/batch";
import { GPT2Config } from "../model/config";
import { gptForward, Params } from "../model/gpt";
import { tokenKl, tokenNll } from "../model/loss";
import { ModelView } from "../model/paramsModel";
import { exampleMask } from "./edit";
import { Editor } from "./editor";
import { EditCalls, EditorKind, mendKind, RowUpdate } from "./editorKind";
import { disposeFactors } from "./factor";
import { MetaExample } from "./metaExamples";

export interface MetaLossConfig {
  cEdit: number;
  cLoc: number;
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
  /** [R] loss weight of each edit row: 1 / (#groups · #edits in its group). The weights sum to 1. */
  weight: tf.Tensor1D;
  /** Example (edit row) that each locality row belongs to; one row per example unless `extraLoc`. */
  locOwner: number[];
  /** [L] weight of each locality row: its example's weight shared among the example's locality rows. */
  locWeight: tf.Tensor1D;
}

/** Encode groups of meta-examples. The caller owns the result (`disposeEncodedMeta`). */
export function encodeMeta(m: ModelView, groups: readonly (readonly MetaExample[])[]): EncodedMeta {
  const T = m.config.n_positions;
  const exs = groups.flat();
  const group = groups.flatMap((g, i) => g.map(() => i));
  const a = encodeExamples(m.tokenizer, exs.map((e) => e.editInner), "target", T);
  const o = encodeExamples(m.tokenizer, exs.map((e) => e.editOuter), "target", T);
  const locs = exs.map((e) => [e.loc, ...(e.extraLoc ?? [])]);
  const locOwner = locs.flatMap((ls, i) => ls.map(() => i));
  const l = encodeExamples(m.tokenizer, locs.flat(), "target", T);
  const w = groups.flatMap((g) => g.map(() => 1 / (groups.length * g.length)));
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

/** The default kind: MEND's editor (its hooks come with the editor, so no `attach` is needed here). */
const MEND: EditorKind<Editor> = mendKind();
/** `kind`, or MEND's when none is given (then the editor is MEND's `Editor`). */
function kindOr<E>(kind?: EditorKind<E>): EditorKind<E> {
  return kind ?? (MEND as unknown as EditorKind<E>);
}

/** The requests (x_e, y_e) of an encoded batch, in row order. */
const innerRequests = (groups: readonly (readonly MetaExample[])[]) => groups.flat().map((x) => x.editInner);

/**
 * The meta-loss of a batch of groups, each group (edit call) with its own edit: `updates` are every
 * edited weight's low-rank rows with the row of `e.inner` (request) each comes from. Differentiable
 * in whatever made the updates. @param preLoc [L, T, V] pre-edit locality logits. `params`: the
 * parameters the edited forwards start from (default the model's).
 * @returns the weighted L_edit, L_loc, the total, and the edited logits [R, T, V] and [L, T, V].
 */
export function metaLoss(m: ModelView, e: EncodedMeta, updates: Readonly<Record<string, RowUpdate>>, preLoc: tf.Tensor3D, c: MetaLossConfig, params: Readonly<Params> = m.params) {
  const forward = (b: Batch, textGroup: readonly number[]) => {
    const tokenGroup = rowGroups(b, textGroup);
    const lowRank = Object.fromEntries(Object.entries(updates).map(([n, u]) => [n, { left: u.left, right: u.right, mask: exampleMask(tokenGroup, u.requests.map((q) => e.group[q])) }]));
    return gptForward(params, m.config, b.inputIds, { attentionMask: b.attentionMask, lowRank }).logits;
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

/** The edit calls of an encoded batch for a kind's `updates`. */
function editCalls(m: ModelView, e: EncodedMeta, groups: readonly (readonly MetaExample[])[], factors: EditCalls["factors"]): EditCalls {
  const Ti = e.inner.inputIds.shape[1];
  return { model: m, batch: e.inner, requests: innerRequests(groups), factors, rowCall: (r) => e.group[Math.floor(r / Ti)] };
}

/**
 * One meta-training batch: the kind's statistics update (if `train`, before its update is formed,
 * as the official code normalises), the meta-loss (plus the kind's own terms) and its gradients
 * w.r.t. `vars` (checkpoint name -> variable). Returns the gradients by checkpoint name (caller owns
 * them; null when not finite: the official code skips such examples), their global norm, the
 * kind's extra loss terms and per-example metrics. `kind`: the editor's kind (default MEND's).
 */
export function metaBatchGrads<E = Editor>(
  m: ModelView,
  editor: E,
  groups: readonly (readonly MetaExample[])[],
  vars: Record<string, tf.Variable>,
  c: MetaLossConfig,
  train = true,
  kind?: EditorKind<E>,
): { grads: Record<string, tf.Tensor> | null; gradNorm: number; results: ExampleResult[]; extra: Record<string, number> } {
  const k = kindOr(kind);
  const e = encodeMeta(m, groups);
  const factors = k.capture(editor, m, e.inner, e.group);
  try {
    if (train) k.observe?.(editor, factors);
    const params = k.params?.(editor, m) ?? m.params;
    const pre = preEditLogits(params, m.config, e.loc);
    const calls = editCalls(m, e, groups, factors);
    const stash: tf.Tensor[] = [];
    const extraNames: string[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const r = metaLoss(m, e, k.updates(editor, calls), pre, c, params);
      const extra = k.extraLoss?.(editor, m, e.loc) ?? {};
      extraNames.push(...Object.keys(extra));
      stash.push(tf.keep(tf.stack([r.lEdit, r.lLoc, ...Object.values(extra)])), tf.keep(tf.argMax(r.outerLogits, -1)), tf.keep(tf.argMax(r.locLogits, -1)));
      return Object.values(extra).reduce((t: tf.Scalar, x) => tf.add(t, x) as tf.Scalar, r.total);
    }, Object.values(vars));
    const locPre = tf.tidy(() => tf.argMax(pre, -1));
    const [losses, outerAm, locPost] = stash;
    const [lEdit, lLoc, ...extraValues] = losses.dataSync();
    const results = summarise(e, outerAm.arraySync() as number[][], locPre.arraySync() as number[][], locPost.arraySync() as number[][], lEdit, lLoc);
    const extra = Object.fromEntries(extraNames.map((n, i) => [n, extraValues[i]]));
    const gradNorm = globalNorm(grads);
    const finite = Number.isFinite(gradNorm) && Number.isFinite(value.dataSync()[0]);
    tf.dispose([value, pre, locPre, ...stash]);
    if (!finite) {
      tf.dispose(Object.values(grads));
      return { grads: null, gradNorm, results, extra };
    }
    // variableGrads keys grads by the variables' engine names; map back to checkpoint names.
    const byName: Record<string, tf.Tensor> = {};
    for (const [n, v] of Object.entries(vars)) byName[n] = grads[v.name];
    return { grads: byName, gradNorm, results, extra };
  } finally {
    disposeFactors(factors);
    disposeEncodedMeta(e);
  }
}

/** The global L2 norm of a gradient record, read back. */
export function globalNorm(grads: Readonly<Record<string, tf.Tensor>>): number {
  const sq = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
  const norm = Math.sqrt(sq.dataSync()[0]);
  sq.dispose();
  return norm;
}

/** The same meta-loss without gradients (validation): same metrics, statistics frozen. */
export function metaBatchEval<E = Editor>(m: ModelView, editor: E, groups: readonly (readonly MetaExample[])[], c: MetaLossConfig, kind?: EditorKind<E>): ExampleResult[] {
  const k = kindOr(kind);
  const e = encodeMeta(m, groups);
  const factors = k.capture(editor, m, e.inner, e.group);
  try {
    const out = tf.tidy(() => {
      const params = k.params?.(editor, m) ?? m.params;
      const pre = preEditLogits(params, m.config, e.loc);
      const r = metaLoss(m, e, k.updates(editor, editCalls(m, e, groups, factors)), pre, c, params);
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
export function exampleMetaLoss<E = Editor>(m: ModelView, editor: E, example: MetaExample, c: MetaLossConfig = DEFAULT_META_LOSS_CONFIG, kind?: EditorKind<E>): { lEdit: number; lLoc: number; total: number } {
  const [r] = metaBatchEval(m, editor, [[example]], c, kind);
  return { lEdit: r.lEdit, lLoc: r.lLoc, total: c.cEdit * r.lEdit + c.cLoc * r.lLoc };
}
