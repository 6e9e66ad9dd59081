/**
 * Weight updates as values. An edit, by any method, is a set of changes ΔW of named weights
 * [d_in, d_out] (Conv1D layout), in one of two forms:
 *
 *   low-rank   ΔW = α Kᵀ V = α Σ_i k_i v_iᵀ      K [M, d_in] keys, V [M, d_out] values, α a number
 *              (MEND: k_i = ũ_i, v_i = δ̃_i, one row per token row of the edit; and every method
 *              built on the layer inputs u and output gradients δ);
 *   dense      ΔW itself (fine-tuning).
 *
 * A low-rank row also records which request of its edit call it came from, so a ledger can tell
 * edits apart. An edited model is always W0 + ΔW_1 + ΔW_2 + ..., added in order to the base
 * weights W0: removing an edit means recomputing from W0 without it, never subtracting.
 * `updatedWeights` applied to the result of an earlier `updatedWeights` adds in the same order, so
 * applying updates one at a time and all at once give the same floats.
 */
import * as tf from "@tensorflow/tfjs";
import type { Params } from "./gpt";

/** ΔW = α Kᵀ V of one weight. */
export interface LowRankDelta {
  readonly alpha: number;
  /** K [M, d_in] */
  readonly keys: tf.Tensor2D;
  /** V [M, d_out] */
  readonly values: tf.Tensor2D;
  /** The request (index into its edit call's requests) of each of the M rows. */
  readonly requests: readonly number[];
}

/** ΔW of one weight, as a tensor of the weight's shape ([d_in, d_out] for a matrix; a method that changes every parameter, as ENN, also changes biases and norms). */
export interface DenseDelta {
  readonly delta: tf.Tensor;
}

export type WeightDelta = LowRankDelta | DenseDelta;

/** The changes of one edit (one call, one or more requests), by weight name. */
export type ModelUpdate = Readonly<Record<string, WeightDelta>>;

export function isLowRank(d: WeightDelta): d is LowRankDelta {
  return "keys" in d;
}

/** ΔW of one weight (its shape; [d_in, d_out] for a matrix), inside the caller's tidy (a dense delta is returned as it is). */
function deltaOf(d: WeightDelta): tf.Tensor2D {
  return (isLowRank(d) ? tf.mul(d.alpha, tf.matMul(tf.transpose(d.keys), d.values)) : d.delta) as tf.Tensor2D; // explicit transpose: wasm's fast path
}

/** ΔW of one weight (its shape; [d_in, d_out] for a matrix); the caller owns it. */
export function denseDelta(d: WeightDelta): tf.Tensor2D {
  return isLowRank(d) ? tf.tidy(() => deltaOf(d)) : (tf.clone(d.delta) as tf.Tensor2D);
}

/**
 * W + ΔW_1 + ΔW_2 + ... for every weight an update touches, added in the order given to the weights
 * of `params` (the base model's W0, or an edited model's weights that already hold earlier updates).
 * @returns name -> new weight [d_in, d_out], owned by the caller
 */
export function updatedWeights(params: Readonly<Params>, updates: readonly ModelUpdate[]): Record<string, tf.Tensor2D> {
  const names = [...new Set(updates.flatMap((u) => Object.keys(u)))];
  for (const n of names) {
    const w = params[n];
    if (!w) throw new Error(`an update changes "${n}", which is not a weight of this model`);
    for (const u of updates) {
      const d = u[n];
      if (!d) continue;
      const shape = isLowRank(d) ? [d.keys.shape[1], d.values.shape[1]] : d.delta.shape;
      if (w.shape.join() !== shape.join()) throw new Error(`an update of "${n}" is [${shape}], the weight is [${w.shape}]`);
    }
  }
  return tf.tidy(() => {
    const out: Record<string, tf.Tensor2D> = {};
    for (const n of names) {
      let w = params[n] as tf.Tensor2D;
      for (const u of updates) if (u[n]) w = tf.add(w, deltaOf(u[n])) as tf.Tensor2D;
      out[n] = w;
    }
    return out;
  });
}

/** Every tensor an update holds. */
export function updateTensors(u: ModelUpdate): tf.Tensor[] {
  return Object.values(u).flatMap((d) => (isLowRank(d) ? [d.keys, d.values] : [d.delta]));
}

export function disposeUpdate(u: ModelUpdate): void {
  tf.dispose(updateTensors(u));
}
