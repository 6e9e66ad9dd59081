/**
 * AlphaEdit-style null-space editing (our addition after Fang et al., "AlphaEdit: Null-Space
 * Constrained Knowledge Editing for Language Models", ICLR 2025; the structure, not their code), on
 * MEND's factors u and δ of each edited weight (keyValueEdit.ts spreads an edit over several: each
 * has its own P and A⁻¹ below).
 *
 * Preserved knowledge: the keys K₀ [m, d_in] of prompts whose answers must not move (the world's
 * training-split facts, or a dataset's locality prompts). P projects onto the orthogonal complement
 * of their span,
 *
 *     P = I − K₀ᵀ (K₀ K₀ᵀ + ε I)⁻¹ K₀,   so K₀ P ≈ 0 and K₀ (P X) ≈ 0 for every X,
 *
 * and every update is ΔW = P X: the preserved keys' outputs do not move, to float precision (m must
 * stay well below d_in for the complement to have room: the width bounds how much can be preserved).
 * Earlier edits: their projected keys K̃ₚ = Kₚ P enter the normal equation, as in AlphaEdit, through
 * A = A₀ + Σ K̃ₚᵀ K̃ₚ, kept as its inverse (state `a_inv` [d_in, d_in], updated by Woodbury after each
 * edit). A₀ = λ I in AlphaEdit; ours adds by default a soft penalty on *every* preserved key, not
 * only the ones P removes (MEMIT's covariance term, inside the null space: `preservedCovarianceInverse`).
 * For the edit's keys K̃ = U P and step R:
 *
 *     X = argmin ‖K̃ X − R‖² + ‖X‖²_A = A⁻¹ K̃ᵀ (I + K̃ A⁻¹ K̃ᵀ)⁻¹ R,   ΔW = P X,
 *
 * so L = K̃ A⁻¹ P and S = I + K̃ A⁻¹ K̃ᵀ (an n x n solve, never d_in x d_in).
 */
import * as tf from "@tensorflow/tfjs";
import { disposeBatch, makeBatch, TextExample } from "../model/batch";
import type { MethodState } from "../model/languageModel";
import type { ModelView } from "../model/paramsModel";
import { gptForward } from "../model/gpt";
import { rowsPerPass } from "../model/score";
import { KeySystem, KeyValueRule } from "./keyValueEdit";
import { solveSpd } from "./linalg";
import { gramOf } from "./ultraEdit";

export const ALPHA_EDIT = "AlphaEdit";

/**
 * The keys of each of `weights` at the positions that predict each example's answer (the rows an
 * edit of it would use), at most `maxRows` of them, from examples spread evenly over the list,
 * name -> [m, d_in]: one forward pass per batch for all the weights (keys need no gradient). Caller
 * owns the result.
 */
export function preservedKeysOf(model: ModelView, weights: readonly string[], all: readonly TextExample[], maxRows: number, batchSize = rowsPerPass(model.config, 64)): Record<string, tf.Tensor2D> {
  if (all.length === 0) throw new Error("AlphaEdit: no prompts to preserve were given");
  const step = Math.max(1, Math.floor(all.length / maxRows));
  const examples = all.filter((_, i) => i % step === 0);
  const parts: Record<string, tf.Tensor2D[]> = Object.fromEntries(weights.map((w) => [w, []]));
  for (let i = 0; i < examples.length; i += batchSize) {
    const batch = makeBatch(model.tokenizer, examples.slice(i, i + batchSize), "target", model.config.n_positions);
    const labels = batch.labels.dataSync();
    const rows: number[] = [];
    labels.forEach((l, r) => l >= 0 && rows.push(r)); // the labelled positions, flattened B*T
    const got = tf.tidy(() => {
      const out = gptForward(model.params, model.config, batch.inputIds, { attentionMask: batch.attentionMask, capture: weights });
      const idx = tf.tensor1d(rows, "int32");
      return weights.map((w) => tf.gather(out.inputs[w], idx) as tf.Tensor2D);
    });
    weights.forEach((w, j) => parts[w].push(got[j]));
    disposeBatch(batch);
  }
  return Object.fromEntries(
    weights.map((w) => {
      const k = tf.tidy(() => {
        const c = tf.concat(parts[w]) as tf.Tensor2D;
        return c.shape[0] > maxRows ? (tf.slice(c, [0, 0], [maxRows, -1]) as tf.Tensor2D) : c;
      });
      tf.dispose(parts[w]);
      return [w, k];
    }),
  );
}

/** `preservedKeysOf` for one weight, [m, d_in]. Caller owns the result. */
export function preservedKeys(model: ModelView, weight: string, all: readonly TextExample[], maxRows: number, batchSize?: number): tf.Tensor2D {
  return preservedKeysOf(model, [weight], all, maxRows, batchSize)[weight];
}

/**
 * P = I − K₀ᵀ (K₀ K₀ᵀ + ε I)⁻¹ K₀ [d_in, d_in] (ε relative to the keys' mean squared norm; at the
 * default 1e-6, ‖K₀ P‖ / ‖K₀‖ is about 2e-5 on the facts world, the float32 Gram matrix's limit). The
 * caller owns it. An error when K₀ has as many rows as d_in: nothing would be left to edit.
 */
export function nullSpaceProjector(k0: tf.Tensor2D, eps = 1e-6): tf.Tensor2D {
  const [m, d] = k0.shape;
  if (m >= d) throw new Error(`AlphaEdit: ${m} preserved keys in ${d} dimensions leave no null space; preserve fewer prompts (at most about ${Math.floor(d / 2)})`);
  const g = tf.tidy(() => tf.matMul(k0, tf.transpose(k0)).dataSync() as Float32Array);
  const a = Float64Array.from(g);
  let trace = 0;
  for (let i = 0; i < m; i++) trace += a[i * m + i];
  for (let i = 0; i < m; i++) a[i * m + i] += (eps * trace) / m;
  const k0d = Float64Array.from(k0.dataSync() as Float32Array);
  const x = solveSpd(a, m, k0d, d, "the preserved keys' gram matrix"); // (K₀K₀ᵀ + εI)⁻¹ K₀ [m, d]
  return tf.tidy(() => tf.sub(tf.eye(d), tf.matMul(tf.transpose(k0), tf.tensor2d(Float32Array.from(x), [m, d]))) as tf.Tensor2D);
}

/**
 * The starting A⁻¹ of the normal equation with a soft penalty on every preserved key (MEMIT's
 * covariance term, here inside the null space): A₀ = λ (I + μ P C₀ P / s), C₀ = K₀ᵀK₀ / m over all
 * the preserved keys `k0` [m, d_in] (not only the ≤ d_in / 2 the projector removes), s = tr(C₀) / d.
 * With B = K₀ P (P is symmetric and idempotent, so P C₀ P = BᵀB / m) and c = μ / (s m),
 *
 *     A₀⁻¹ = (I − c Bᵀ (I + c B Bᵀ)⁻¹ B) / λ   (Woodbury: an m x m solve),
 *
 * used when m < d (a dataset's few hundred locality rows at GPT-2's d_in = 3072); otherwise the
 * d x d matrix is inverted directly. The caller owns the result [d_in, d_in].
 */
export function preservedCovarianceInverse(k0: tf.Tensor2D, projector: tf.Tensor2D, lambda: number, mu: number): tf.Tensor2D {
  const d = projector.shape[0];
  const m = k0.shape[0];
  const s = tf.tidy(() => tf.div(tf.sum(tf.square(k0)), m * d).dataSync()[0]); // tr(C₀) / d
  const symmetric = (a: Float64Array, n: number) => {
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i] = (a[i * n + j] + a[j * n + i]) / 2;
    return a;
  };
  if (m < d) {
    const c = mu / (s * m);
    const b = tf.matMul(k0, projector) as tf.Tensor2D; // B = K₀ P [m, d]
    try {
      const g = symmetric(Float64Array.from(tf.tidy(() => tf.mul(tf.matMul(b, tf.transpose(b)), c).dataSync() as Float32Array)), m);
      for (let i = 0; i < m; i++) g[i * m + i] += 1;
      const x = solveSpd(g, m, Float64Array.from(b.dataSync() as Float32Array), d, "the preserved keys' covariance"); // (I + c B Bᵀ)⁻¹ B [m, d]
      return tf.tidy(() => {
        const inv = tf.sub(tf.eye(d), tf.mul(tf.matMul(tf.transpose(b), tf.tensor2d(Float32Array.from(x), [m, d])), c));
        return tf.div(tf.add(inv, tf.transpose(inv)), 2 * lambda) as tf.Tensor2D;
      });
    } finally {
      b.dispose();
    }
  }
  const a = symmetric(
    Float64Array.from(
      tf.tidy(() => {
        const pcp = tf.matMul(tf.matMul(projector, tf.div(tf.matMul(tf.transpose(k0), k0), m)), projector);
        return tf.mul(lambda, tf.add(tf.eye(d), tf.mul(tf.div(pcp, s), mu))).dataSync() as Float32Array;
      }),
    ),
    d,
  );
  const eye = new Float64Array(d * d);
  for (let i = 0; i < d; i++) eye[i * d + i] = 1;
  return tf.tensor2d(Float32Array.from(solveSpd(a, d, eye, d, "the preserved keys' covariance")), [d, d]);
}

/**
 * The AlphaEdit-style rule: `projector` P (owned by the caller, kept alive while the rule is used)
 * and ridge λ on earlier edits' normal equation; `aInv0` (owned by the caller) replaces I/λ as the
 * normal equation's start (`preservedCovarianceInverse`).
 */
export function alphaEditRule(projector: tf.Tensor2D, lambda: number, aInv0?: tf.Tensor2D): KeyValueRule {
  if (!(lambda > 0)) throw new Error(`AlphaEdit: the ridge λ must be positive, got ${lambda}`);
  const d = projector.shape[0];
  const aInvOf = (state: MethodState | undefined): tf.Tensor2D | null => (state?.tensors.a_inv as tf.Tensor2D | undefined) ?? aInv0 ?? null;
  const parts = (u: tf.Tensor2D, state: MethodState | undefined) =>
    tf.tidy(() => {
      const kt = tf.matMul(u, projector) as tf.Tensor2D; // K̃ = U P [n, d]
      const a = aInvOf(state);
      const m = a ? (tf.matMul(kt, a) as tf.Tensor2D) : (tf.div(kt, lambda) as tf.Tensor2D); // K̃ A⁻¹
      return { kt, m };
    });
  return {
    system(u, _delta, state): KeySystem {
      const { kt, m } = parts(u, state);
      const gram = gramOf(m, kt, 1); // S = K̃ A⁻¹ K̃ᵀ + I
      const keys = tf.tidy(() => tf.matMul(m, projector) as tf.Tensor2D); // L = K̃ A⁻¹ P
      tf.dispose([kt, m]);
      return { keys, gram };
    },
    commitsEditedKeys: true,
    commit(u, _delta, state) {
      // A'⁻¹ = A⁻¹ − A⁻¹ K̃ᵀ S⁻¹ K̃ A⁻¹ (Woodbury), symmetrised against float drift; S = K̃ A⁻¹ K̃ᵀ + I.
      const { kt, m } = parts(u, state);
      const n = u.shape[0];
      const sInvM = solveSpd(gramOf(m, kt, 1), n, Float64Array.from(m.dataSync() as Float32Array), d, "the edit's key system");
      const prior = aInvOf(state);
      const aInv = tf.tidy(() => {
        const base = prior ?? tf.div(tf.eye(d), lambda);
        const next = tf.sub(base, tf.matMul(tf.transpose(m), tf.tensor2d(Float32Array.from(sInvM), [n, d])));
        return tf.div(tf.add(next, tf.transpose(next)), 2) as tf.Tensor2D;
      });
      tf.dispose([kt, m]);
      return { method: ALPHA_EDIT, meta: { edits: Number(state?.meta.edits ?? 0) + 1 }, tensors: { a_inv: aInv } };
    },
  };
}
