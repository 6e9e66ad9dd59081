/**
 * UltraEdit-style lifelong editing (our addition after Gu et al., "UltraEdit: Training-, Subject-
 * and Memory-Free Lifelong Editing in Large Language Models", 2025; the structure, not their code):
 * no trained editor, only MEND's factors u and δ of one weight, normalised with running statistics
 * kept across the whole stream ("lifelong normalisation"), and a ridge least-squares solve for ΔW.
 *
 * With D = diag(1/σ_u) from the running statistics (σ_u = 1 until two rows are seen), the keys of
 * the update are the scaled inputs Ũ = U D and the coefficients solve the ridge system
 *
 *     (U D Uᵀ + λ I) C = R,   ΔW = Ũᵀ C = D Uᵀ C,   so U ΔW = R − λ C ≈ R,
 *
 * the minimum-norm update (in the D-weighted norm) that moves the edit rows' outputs by R. The step
 * R = −η δ/σ_δ is δ scaled by the running σ_δ (keyValueEdit.ts). Scaling only, no centring: a
 * running mean of the stream's first rows would zero the first edits' own keys. Memory-free: no key
 * of an earlier edit is kept, only the statistics (state: `u_mean`, `u_m2`, `delta_mean`,
 * `delta_m2`, meta `count`).
 */
import * as tf from "@tensorflow/tfjs";
import type { MethodState } from "../model/languageModel";
import { RunningStats, stdOf, updateStats } from "../mend/stats";
import { KeySystem, KeyValueRule } from "./keyValueEdit";

export const ULTRA_EDIT = "UltraEdit";

function statsOf(state: MethodState | undefined): RunningStats | null {
  if (!state) return null;
  const t = state.tensors;
  return { count: Number(state.meta.count), u: { mean: t.u_mean as tf.Tensor1D, m2: t.u_m2 as tf.Tensor1D }, delta: { mean: t.delta_mean as tf.Tensor1D, m2: t.delta_m2 as tf.Tensor1D } };
}

/** The gram matrix K Lᵀ (+ λ I) as row-major float64: [n, n]. */
export function gramOf(k: tf.Tensor2D, l: tf.Tensor2D, lambda: number): Float64Array {
  const g = tf.tidy(() => tf.matMul(k, tf.transpose(l)).dataSync() as Float32Array);
  const n = k.shape[0];
  const out = Float64Array.from(g);
  for (let i = 0; i < n; i++) out[i * n + i] += lambda;
  return out;
}

/** The UltraEdit-style rule with ridge λ. */
export function ultraEditRule(lambda: number): KeyValueRule {
  if (!(lambda > 0)) throw new Error(`UltraEdit: the ridge λ must be positive, got ${lambda}`);
  return {
    system(u, state): KeySystem {
      const s = statsOf(state);
      const keys = tf.tidy(() => (s && s.count >= 2 ? (tf.div(u, tf.add(stdOf(s.u, s.count), 1e-7)) as tf.Tensor2D) : tf.clone(u)));
      return { keys, gram: gramOf(u, keys, lambda) };
    },
    valueScale(state) {
      const s = statsOf(state);
      return s && s.count >= 2 ? tf.tidy(() => tf.add(stdOf(s.delta, s.count), 1e-12) as tf.Tensor1D) : null;
    },
    commit(u, delta, _sys, state) {
      const prior = statsOf(state);
      const s: RunningStats = prior
        ? { count: prior.count, u: { mean: tf.clone(prior.u.mean), m2: tf.clone(prior.u.m2) }, delta: { mean: tf.clone(prior.delta.mean), m2: tf.clone(prior.delta.m2) } }
        : { count: 0, u: { mean: tf.zeros([u.shape[1]]), m2: tf.zeros([u.shape[1]]) }, delta: { mean: tf.zeros([delta.shape[1]]), m2: tf.zeros([delta.shape[1]]) } };
      updateStats(s, u, delta);
      return { method: ULTRA_EDIT, meta: { count: s.count }, tensors: { u_mean: s.u.mean, u_m2: s.u.m2, delta_mean: s.delta.mean, delta_m2: s.delta.m2 } };
    },
  };
}
