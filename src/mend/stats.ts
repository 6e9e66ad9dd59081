/**
 * Running normalisation statistics of an editor's inputs (mend-spec §3.3).
 *
 * Per editor network: mean and sum of squared deviations (M2) of u ∈ R^{d_in} and of δ ∈ R^{d_out}
 * over every kept token row seen during meta-training, and the row count k. The official code runs
 * a sequential Welford pass inside the forward; we merge a whole batch at once with Chan's formula,
 * which is algebraically identical:
 *
 *     k' = k + b,   μ' = μ + Δ·b/k',   M2' = M2 + M2_b + Δ²·k·b/k',   Δ = μ_b − μ.
 *
 * Differences from the official code, on purpose:
 *  - Updates are an explicit call (`updateStats`) made by the training loop, never inside the forward.
 *  - k is a JS number (float64), so it does not saturate at 2^24 as the official float32 counter does.
 *  - The statistics are saved with the editor and restored on load (the official `norm_init` flag
 *    is lost on resume, which resets μ and k at the first training row).
 * Normalised inputs: (x − μ) / (σ + 1e-7), σ = sqrt(M2 / (k − 1)) (unbiased), as in the code.
 */
import * as tf from "@tensorflow/tfjs";

export interface Moments {
  /** [d] */
  mean: tf.Tensor1D;
  /** [d] sum of squared deviations */
  m2: tf.Tensor1D;
  /**
   * [d] σ + 1e-7, computed on first use and owned with these moments (an update replaces the
   * moments, and `disposeStats` frees it): frozen statistics are not re-derived at every edit.
   */
  denom?: tf.Tensor1D;
}

export interface RunningStats {
  /** Rows seen so far. */
  count: number;
  u: Moments;
  delta: Moments;
}

const NORM_EPS = 1e-7;

/** Empty statistics for an editor of inputs [d_in] and [d_out]. Caller owns the tensors. */
export function createStats(dIn: number, dOut: number): RunningStats {
  return { count: 0, u: { mean: tf.zeros([dIn]), m2: tf.zeros([dIn]) }, delta: { mean: tf.zeros([dOut]), m2: tf.zeros([dOut]) } };
}

export function disposeStats(s: RunningStats): void {
  for (const m of [s.u, s.delta]) tf.dispose([m.mean, m.m2, ...(m.denom ? [m.denom] : [])]);
}

function merge(m: Moments, count: number, x: tf.Tensor2D): Moments {
  return tf.tidy(() => {
    const b = x.shape[0];
    const { mean: mb, variance } = tf.moments(x, 0); // population variance of the batch
    const m2b = tf.mul(variance, b);
    const total = count + b;
    const d = tf.sub(mb, m.mean);
    return {
      mean: tf.add(m.mean, tf.mul(d, b / total)) as tf.Tensor1D,
      m2: tf.add(tf.add(m.m2, m2b), tf.mul(tf.square(d), (count * b) / total)) as tf.Tensor1D,
    };
  });
}

/**
 * Merge a batch of kept rows into the statistics, in place (old tensors are disposed).
 * @param u [Nk, d_in]  @param delta [Nk, d_out] (same rows)
 */
export function updateStats(s: RunningStats, u: tf.Tensor2D, delta: tf.Tensor2D): void {
  tf.util.assert(u.shape[0] === delta.shape[0], () => `updateStats: u has ${u.shape[0]} rows but delta has ${delta.shape[0]}`);
  tf.util.assert(u.shape[1] === s.u.mean.shape[0] && delta.shape[1] === s.delta.mean.shape[0], () => `updateStats: inputs [${u.shape}], [${delta.shape}] do not match statistics of size ${s.u.mean.shape[0]}, ${s.delta.mean.shape[0]}`);
  const b = u.shape[0];
  if (b === 0) return;
  const nu = merge(s.u, s.count, u);
  const nd = merge(s.delta, s.count, delta);
  disposeStats(s);
  s.u = nu;
  s.delta = nd;
  s.count += b;
}

/** σ = sqrt(M2 / (k − 1)); throws (like the official code) before two rows have been seen. */
export function stdOf(m: Moments, count: number): tf.Tensor1D {
  if (count < 2) throw new Error(`normalisation statistics have seen ${count} row(s); at least 2 are needed (train the editor, or load a trained one)`);
  return tf.tidy(() => tf.sqrt(tf.div(m.m2, count - 1)) as tf.Tensor1D);
}

/**
 * Normalise u and δ with the statistics: ū = (u − μ_u)/(σ_u + 1e-7), δ̄ likewise.
 * Returns new tensors owned by the caller. Inside a gradient closure this is just arithmetic on
 * constants (u, δ and the statistics are never differentiated).
 * @param u [Nk, d_in] @param delta [Nk, d_out]
 */
export function normalizeFactors(s: RunningStats, u: tf.Tensor2D, delta: tf.Tensor2D): { uBar: tf.Tensor2D; deltaBar: tf.Tensor2D } {
  const du = denominator(s.u, s.count);
  const dd = denominator(s.delta, s.count);
  return tf.tidy(() => ({
    uBar: tf.div(tf.sub(u, s.u.mean), du) as tf.Tensor2D,
    deltaBar: tf.div(tf.sub(delta, s.delta.mean), dd) as tf.Tensor2D,
  }));
}

/** σ_u + 1e-7 [d_in], the scale `normalizeFactors` divides u by (cached; owned by the statistics). */
export function inputScale(s: RunningStats): tf.Tensor1D {
  return denominator(s.u, s.count);
}

/** σ + 1e-7 of `m`, cached on `m` (kept out of any enclosing tidy; freed with the moments). */
function denominator(m: Moments, count: number): tf.Tensor1D {
  m.denom ??= tf.keep(tf.tidy(() => tf.add(stdOf(m, count), NORM_EPS) as tf.Tensor1D));
  return m.denom;
}
