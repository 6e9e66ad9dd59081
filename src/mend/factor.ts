/**
 * Gradient factoring (MEND §3.1, mend-spec §2): for a linear layer z = u W + b (Conv1D, W [d_in, d_out])
 * the gradient of a token-summed loss is a sum of rank-1 terms,
 *
 *     ∇_W L = Σ_i u_i δ_iᵀ = Uᵀ Δ,   δ_i = ∂L/∂z_i,
 *
 * so MEND only needs the per-token vectors u_i (layer input) and δ_i (gradient at the layer output).
 *
 * We capture them without hooks: the forward returns the inputs u of the chosen layers and adds a
 * zero "probe" to their outputs; the gradient of the loss w.r.t. each probe is exactly δ.
 * u and δ are constants for MEND (detached in the official code): no second-order terms.
 *
 * Rows (tokens) whose u or δ is entirely zero are dropped, per layer, as the official code does
 * ("skip batch elements with zero grad"): for right-padded decoder batches these are the padding rows.
 * A `RowSelector` hook (hooks.ts) may choose other rows.
 *
 * Shapes: N = B*T token rows, Nk = kept rows, d_in/d_out of the edited weight.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch } from "../model/batch";
import { GPT2Config } from "../model/config";
import { gptForward, Params } from "../model/gpt";
import { groupedMeanNll, meanNll } from "../model/loss";


export interface Factors {
  /** Kept layer inputs, name -> [Nk, d_in]. */
  u: Record<string, tf.Tensor2D>;
  /** Kept output gradients, name -> [Nk, d_out]. */
  delta: Record<string, tf.Tensor2D>;
  /** Indices of the kept rows (into the B*T flattened rows), per name. */
  rows: Record<string, number[]>;
  /** The edit loss the gradients are of (mean target-token NLL; per group with `group`). */
  loss: number;
  /** The labelled rows (into the B*T flattened rows): the positions whose logits predict a target token. */
  targetRows: number[];
  /** T, the batch's sequence length: flattened row r is position r % T of batch row ⌊r / T⌋. */
  seqLen: number;
}

/**
 * One forward/backward pass over the edit batch: returns u and δ for each name in `innerParams`
 * (zero rows dropped). The loss is the mean NLL over all target tokens of the batch (official: one
 * edit call, k requests included); with `group` (batch row -> independent edit call, used by
 * meta-training) it is the sum of per-group means. Rows are filtered `structural`ly (from the labels,
 * no device read) or by reading the `data` (official: rows whose u or δ is all zero); both give the
 * same rows for this architecture (tested). `selectRows` (a hook) replaces the official rows.
 * The caller owns the returned tensors.
 */
export function captureFactors(
  params: Readonly<Params>,
  config: GPT2Config,
  batch: Batch,
  innerParams: readonly string[],
  group?: readonly number[],
  rowFilter: "structural" | "data" = "structural",
  selectRows?: (official: Readonly<Record<string, number[]>>, targetRows: readonly number[]) => Record<string, number[]>,
): Factors {
  const [B, T] = batch.inputIds.shape;
  const N = B * T;
  const probes: Record<string, tf.Tensor> = {};
  for (const name of innerParams) {
    const w = params[name];
    if (!w) throw new Error(`inner parameter "${name}" is not a parameter of the base model`);
    if (w.rank !== 2) throw new Error(`inner parameter "${name}" must be a 2-D weight, got shape [${w.shape}]`);
    probes[name] = tf.zeros([N, w.shape[1] as number]);
  }
  const captured: Record<string, tf.Tensor2D> = {};
  const { value, grads } = tf.tidy(() =>
    tf.valueAndGrads((...ps: tf.Tensor[]) => {
      const probeMap = Object.fromEntries(innerParams.map((n, i) => [n, ps[i]]));
      const out = gptForward(params, config, batch.inputIds, { attentionMask: batch.attentionMask, capture: innerParams, probes: probeMap });
      for (const n of innerParams) captured[n] = tf.keep(out.inputs[n]);
      return group ? groupedMeanNll(out.logits, batch.labels, group) : meanNll(out.logits, batch.labels);
    })(innerParams.map((n) => probes[n])),
  );
  tf.dispose(Object.values(probes));
  const loss = value.dataSync()[0];
  value.dispose();
  if (!Number.isFinite(loss)) {
    tf.dispose([...grads, ...Object.values(captured)]);
    throw new Error(`edit loss is ${loss}: the base model produced non-finite values on the edit example`);
  }
  const labelRows = labelledRows(batch);
  const f: Factors = { u: {}, delta: {}, rows: {}, loss, targetRows: labelRows.labelled, seqLen: T };
  const official = rowFilter === "data" ? dataRowFilter(captured, grads as tf.Tensor2D[], innerParams, N) : rowsFromLabels(labelRows, innerParams, config.n_layer);
  const keep = selectRows ? selectRows(official, labelRows.labelled) : official;
  innerParams.forEach((name, i) => {
    const u = captured[name];
    const d = grads[i] as tf.Tensor2D;
    const rows = keep[name];
    f.rows[name] = rows;
    if (rows.length === N) {
      f.u[name] = u;
      f.delta[name] = d;
    } else {
      const idx = tf.tensor1d(rows, "int32");
      f.u[name] = tf.gather(u, idx);
      f.delta[name] = tf.gather(d, idx);
      tf.dispose([idx, u, d]);
    }
  });
  return f;
}

/** Official filter: rows where u and δ are both non-zero, from one read of all the layers' [N] masks. */
function dataRowFilter(u: Record<string, tf.Tensor2D>, d: tf.Tensor2D[], innerParams: readonly string[], N: number): Record<string, number[]> {
  const masks = tf.tidy(() => tf.stack(innerParams.map((n, i) => tf.logicalAnd(tf.any(tf.notEqual(u[n], 0), 1), tf.any(tf.notEqual(d[i], 0), 1)))));
  const flags = masks.dataSync();
  masks.dispose();
  return Object.fromEntries(innerParams.map((n, i) => [n, Array.from({ length: N }, (_, r) => r).filter((r) => flags[i * N + r])]));
}

/**
 * The rows where δ is non-zero, known from the batch alone (right-padded, causal GPT-2): δ reaches
 * every real position up to the row's last label through later attention layers, except for the
 * last block's attn.c_proj, mlp.c_fc and mlp.c_proj, whose outputs reach only their own position's
 * logits, so only labelled positions. (The last block's attn.c_attn makes keys and values that
 * later positions read, so it keeps every position up to the last label.)
 * (u, a LayerNorm/GELU output, is never all-zero at real positions.)
 */
function rowsFromLabels(l: { upToLast: number[]; labelled: number[] }, innerParams: readonly string[], nLayer: number): Record<string, number[]> {
  return Object.fromEntries(innerParams.map((n) => [n, reachesOwnPositionOnly(n, nLayer) ? l.labelled : l.upToLast]));
}

/** Whether weight `name`'s output reaches only its own position's logits (no attention layer after it reads it). */
function reachesOwnPositionOnly(name: string, nLayer: number): boolean {
  const last = `h.${nLayer - 1}.`;
  return name.startsWith(last) && name !== `${last}attn.c_attn.weight`;
}

/** From one read of the labels: the rows up to each text's last label, and the labelled rows (flattened B*T indices). */
function labelledRows(batch: Batch): { upToLast: number[]; labelled: number[] } {
  const labels = batch.labels.arraySync() as number[][];
  const T = batch.inputIds.shape[1];
  const upToLast: number[] = [];
  const labelled: number[] = [];
  labels.forEach((row, b) => {
    const last = row.reduce((acc, l, t) => (l >= 0 ? t : acc), -1);
    for (let t = 0; t <= last; t++) upToLast.push(b * T + t);
    row.forEach((l, t) => l >= 0 && labelled.push(b * T + t));
  });
  return { upToLast, labelled };
}

export function disposeFactors(f: Factors): void {
  tf.dispose([...Object.values(f.u), ...Object.values(f.delta)]);
}

/**
 * The rank-1 identity's right-hand side: Σ_i u_i δ_iᵀ = Uᵀ Δ, [d_in, d_out] (Conv1D layout, the
 * weight's own shape). Caller owns the result.
 */
export function outerProductSum(u: tf.Tensor2D, delta: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.matMul(tf.transpose(u), delta)); // explicit transpose: fast path on wasm
}

/** The autodiff gradient ∂L/∂W of the same edit loss (mean NLL), for checking the identity. Caller owns it. */
export function autodiffWeightGradient(params: Readonly<Params>, config: GPT2Config, batch: Batch, name: string): tf.Tensor2D {
  return tf.tidy(() => {
    const g = tf.grad((w: tf.Tensor) => meanNll(gptForward(params, config, batch.inputIds, { attentionMask: batch.attentionMask, replace: { [name]: w } }).logits, batch.labels));
    return g(params[name]) as tf.Tensor2D;
  });
}
