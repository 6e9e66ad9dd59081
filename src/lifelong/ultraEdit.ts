/**
 * UltraEdit-style lifelong editing (our addition after Gu et al., "UltraEdit: Training-, Subject-
 * and Memory-Free Lifelong Editing in Large Language Models", 2025; its official editor/ultraedit.py
 * in XiaojieGu/UltraEdit): no trained editor, only MEND's factors u and δ of one weight, normalised
 * with running statistics kept across the whole stream ("lifelong normalisation"), and a ridge
 * least-squares solve for ΔW. As the official file does, for each edit call:
 *
 *  1. the statistics first take in this edit's rows (its `cache` runs before `predict_param_shifts`);
 *  2. each row's value is its normalised gradient scaled by its normalised key's squared norm,
 *     v_i = −η (‖û_i‖² / d_in) δ̂_i, with û = (u − μ_u) / σ_u and δ̂ = (δ − μ_δ) / σ_δ (ultraedit.py:86-90);
 *  3. the solve uses the raw keys: ΔW = (Uᵀ U + λ I)⁻¹ Uᵀ V = Uᵀ (U Uᵀ + λ I)⁻¹ V (λ = 1 there,
 *     ultraedit.py:92-94), here in its n x n form (n rows, fewer than d_in).
 *
 * Ours differs (docs/deviations.md): before two rows are seen the official normaliser maps the lone
 * row to 0 (the first edit of a single-edit stream would change nothing), ours steps along
 * δ / rms(δ); the official lr is η / d_in; the step repeats on the
 * edited model until the edit holds (keyValueEdit.ts). Memory-free: no key of an earlier edit is
 * kept, only the statistics (state: `u_mean`, `u_m2`, `delta_mean`, `delta_m2`, meta `count`).
 */
import * as tf from "@tensorflow/tfjs";
import type { MethodState } from "../model/languageModel";
import { disposeStats, normalizeFactors, RunningStats, stdOf, updateStats } from "../mend/stats";
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

/** The statistics of `state` with the rows u [n, d_in], δ [n, d_out] merged in (new tensors, owned by the caller). */
function statsWith(state: MethodState | undefined, u: tf.Tensor2D, delta: tf.Tensor2D): RunningStats {
  const prior = statsOf(state);
  const s: RunningStats = prior
    ? { count: prior.count, u: { mean: tf.clone(prior.u.mean), m2: tf.clone(prior.u.m2) }, delta: { mean: tf.clone(prior.delta.mean), m2: tf.clone(prior.delta.m2) } }
    : { count: 0, u: { mean: tf.zeros([u.shape[1]]), m2: tf.zeros([u.shape[1]]) }, delta: { mean: tf.zeros([delta.shape[1]]), m2: tf.zeros([delta.shape[1]]) } };
  updateStats(s, u, delta);
  return s;
}

/** The UltraEdit-style rule with ridge λ. */
export function ultraEditRule(lambda: number): KeyValueRule {
  if (!(lambda > 0)) throw new Error(`UltraEdit: the ridge λ must be positive, got ${lambda}`);
  return {
    system(u, delta, state): KeySystem {
      const s = statsWith(state, u, delta);
      try {
        const keys = tf.clone(u);
        const gram = gramOf(u, u, lambda);
        // One row seen: the official normaliser maps it to 0 (no edit); ours steps along δ / rms(δ).
        if (s.count < 2) return { keys, gram };
        const { uBar, deltaBar } = normalizeFactors(s, u, delta);
        const coef = tf.tidy(() => tf.div(tf.sum(tf.square(uBar), 1, true), u.shape[1]) as tf.Tensor2D); // ‖û_i‖² / d_in [n, 1]
        tf.dispose([uBar, deltaBar]);
        const scale = tf.tidy(() => tf.add(stdOf(s.delta, s.count), 1e-7) as tf.Tensor1D);
        return { keys, gram, direction: (d) => tf.tidy(() => tf.mul(coef, tf.div(d, scale)) as tf.Tensor2D), held: [coef, scale] };
      } finally {
        disposeStats(s);
      }
    },
    commit(u, delta, state) {
      const s = statsWith(state, u, delta);
      return { method: ULTRA_EDIT, meta: { count: s.count }, tensors: { u_mean: s.u.mean, u_m2: s.u.m2, delta_mean: s.delta.mean, delta_m2: s.delta.m2 } };
    },
  };
}
