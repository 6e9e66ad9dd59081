/**
 * Nearest-key lookups shared by the memories that route inputs to stored edits (the cache,
 * baselines/cache.ts; GRACE's codebook, lifelong/grace.ts). Shapes: B queries, K keys, C width.
 */
import * as tf from "@tensorflow/tfjs";

/** Euclidean distances [B][K] of query rows q [B, C] to keys [K, C] (‖q‖² − 2qkᵀ + ‖k‖², clipped at 0), read back. */
export function pairwiseDistances(q: tf.Tensor2D, keys: tf.Tensor2D): number[][] {
  return tf.tidy(() => {
    const d2 = tf.add(tf.sub(tf.sum(tf.square(q), 1, true), tf.mul(2, tf.matMul(q, tf.transpose(keys)))), tf.transpose(tf.sum(tf.square(keys), 1, true)));
    return tf.sqrt(tf.maximum(d2, 0)).arraySync() as number[][];
  });
}

/** The index of the smallest entry of a row of distances (the first, on ties). */
export function argmin(row: readonly number[]): number {
  let best = 0;
  row.forEach((d, k) => {
    if (d < row[best]) best = k;
  });
  return best;
}

/** Per query, the nearest key, or -1 when it lies farther than that key's radius. */
export function nearestWithin(q: tf.Tensor2D, keys: tf.Tensor2D, radius: (k: number) => number): number[] {
  return pairwiseDistances(q, keys).map((row) => {
    const k = argmin(row);
    return row[k] <= radius(k) ? k : -1;
  });
}
