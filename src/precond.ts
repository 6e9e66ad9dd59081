/**
 * Key preconditioning (our deviation, opt-in: `EditorConfig.keyPrecond`). A rank-1 update
 * W' = W + k δᵀ moves every other input u' by (u'·k) δ: the key k decides how local the edit is.
 * MEND's key is the editor's ũ, which at identity init is the normalised input (u − μ)/σ: a
 * diagonal rescaling. ROME keys its edits with C⁻¹u instead, C = E[u uᵀ] over many inputs of the
 * layer, so that directions every prompt shares (for instance "about to name a language") weigh
 * little and the edit prompt's own directions weigh much. Here the editor's ũ is mapped to
 *
 *     key = (ũ ∘ σ) P,   P = s (C + λ s I)⁻¹,   s = tr(C) / d_in,
 *
 * with σ the normalisation's σ + 1e-7 (so at identity init key = (u − μ) P) and C measured once, on
 * the base model, at the answer position of the training prompts. s makes P the identity for an
 * isotropic C, so α keeps its scale; λ is a ridge relative to the mean eigenvalue.
 * Measured without an editor (`scripts/key-whitening.js`, README): a one-layer gradient step keyed
 * with C⁻¹u keeps edit success and paraphrases and moves locality from 0.93 to 0.98.
 */
import * as tf from "@tensorflow/tfjs";
import { lastPositionInputs } from "./preserve";
import { ModelView } from "./score";

/**
 * E[u uᵀ] of each named weight's input at the last prompt position (the position that predicts the
 * answer), over `prompts`. @returns name -> row-major [d_in · d_in] (float64)
 */
export function keySecondMoments(model: ModelView, names: readonly string[], prompts: readonly string[], batchSize = 256): Record<string, Float64Array> {
  if (prompts.length === 0) throw new Error("keySecondMoments: no prompts");
  const { inputs } = lastPositionInputs(model, names, prompts, batchSize); // name -> [n, d_in]
  const out = Object.fromEntries(names.map((n) => {
    const sum = tf.tidy(() => tf.matMul(tf.transpose(inputs[n]), inputs[n])); // Σ u uᵀ
    const m = Float64Array.from(sum.dataSync(), (x) => x / prompts.length);
    sum.dispose();
    return [n, m];
  }));
  tf.dispose(Object.values(inputs));
  return out;
}

/**
 * P = s (C + λ s I)⁻¹ with s = tr(C)/d, by Cholesky (float64). @param C row-major [d · d], symmetric
 * positive semi-definite. @returns row-major [d · d] (symmetric)
 */
export function ridgeInverse(C: Float64Array, d: number, lam: number): Float64Array {
  if (C.length !== d * d) throw new Error(`ridgeInverse: C has ${C.length} entries, expected ${d}x${d}`);
  if (!(lam > 0)) throw new Error(`ridgeInverse: the ridge λ must be > 0, got ${lam}`);
  let tr = 0;
  for (let i = 0; i < d; i++) tr += C[i * d + i];
  const s = tr / d;
  if (!(s > 0) || !Number.isFinite(s)) throw new Error(`ridgeInverse: the second moment has trace ${tr}`);
  const A = Float64Array.from(C);
  for (let i = 0; i < d; i++) A[i * d + i] += lam * s;
  const P = spdInverse(A, d);
  for (let i = 0; i < P.length; i++) P[i] *= s;
  return P;
}

/** A⁻¹ of a symmetric positive definite A, row-major [d · d], by Cholesky (float64). */
export function spdInverse(A: Float64Array, d: number): Float64Array {
  const L = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let v = A[i * d + j];
      for (let k = 0; k < j; k++) v -= L[i * d + k] * L[j * d + k];
      if (i === j && !(v > 0)) throw new Error(`spdInverse: the matrix is not positive definite (pivot ${i}: ${v})`);
      L[i * d + j] = i === j ? Math.sqrt(v) : v / L[j * d + j];
    }
  }
  const inv = new Float64Array(d * d);
  const y = new Float64Array(d);
  for (let c = 0; c < d; c++) {
    for (let i = 0; i < d; i++) { // L y = e_c
      let v = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) v -= L[i * d + k] * y[k];
      y[i] = v / L[i * d + i];
    }
    for (let i = d - 1; i >= 0; i--) { // Lᵀ x = y, x is column c
      let v = y[i];
      for (let k = i + 1; k < d; k++) v -= L[k * d + i] * inv[k * d + c];
      inv[i * d + c] = v / L[i * d + i];
    }
  }
  return inv;
}

/**
 * Batch key decorrelation (our deviation, opt-in: `EditorConfig.batchPrecond` β, on top of key
 * preconditioning). MEND sums the k edits of a call, so request j's update reaches request i's
 * input v through the cross term (v · key_j) δ̃_j: same-relation edits share much of their input
 * and overwrite each other. MEMIT solves a batch with (C + K Kᵀ)⁻¹, the batch's own keys entering
 * the covariance. Here each key κ = s P (s a row of S = ũ ∘ σ) is corrected, within the span of the
 * call's target inputs (v̂ normalised to v̂ᵀ P v̂ = 1, W = V̂ P, G = W V̂ᵀ), so that its responses on
 * the *other* requests' inputs vanish (up to the ridge 1/β) and those on its own request's inputs
 * stay:
 *
 *     key = κ − ((κ V̂ᵀ) ∘ O) (I/β + G)⁻¹ W,   O[row, j] = 1 if input j belongs to another request.
 *
 * Then V̂ keyᵀ = r − G (I/β + G)⁻¹ (r ∘ o) → r ∘ (1 − o) as β → ∞. A call of one request is left as it
 * is (O = 0). V̂, G and the n × n inverse are constants (MEND's u is detached): the gradient flows
 * through S only.
 * @param S [m, d] the call's keys before P, (ũ ∘ σ) @param V [n, d] the call's inputs at its
 * target rows (and preserved inputs, preserve.ts) @param P [d, d], or null for the identity
 * @param beta β, one for all inputs or one per input @param other [m, n] 0/1: the input belongs to
 * another request (or is preserved): the row's response on it is removed @returns keys [m, d]
 */
export function decorrelatedKeys(S: tf.Tensor2D, V: tf.Tensor2D, P: tf.Tensor2D | null, beta: number | readonly number[], other: tf.Tensor2D): tf.Tensor2D {
  const n = V.shape[0];
  const betas = typeof beta === "number" ? new Array<number>(n).fill(beta) : beta;
  if (betas.length !== n) throw new Error(`decorrelatedKeys: ${betas.length} ridges for ${n} inputs`);
  for (const b of betas) if (!(b > 0)) throw new Error(`decorrelatedKeys: β must be > 0, got ${b}`);
  if (other.shape[0] !== S.shape[0] || other.shape[1] !== n) throw new Error(`decorrelatedKeys: the mask is [${other.shape}], expected [${S.shape[0]}, ${n}]`);
  if (n === 0) return P ? tf.matMul(S, P) : tf.clone(S);
  return tf.tidy(() => {
    const VP = P ? tf.matMul(V, P) : V; // [n, d]
    const r = tf.reshape(tf.rsqrt(tf.sum(tf.mul(V, VP), 1)), [n, 1]); // 1/√(vᵀPv)
    const W = tf.mul(VP, r); // V̂ P
    const gram = tf.matMul(W, tf.transpose(tf.mul(V, r))); // G = W V̂ᵀ [n, n]
    const M = Float64Array.from(gram.dataSync());
    for (let i = 0; i < n; i++) M[i * n + i] += 1 / betas[i];
    const Minv = tf.tensor2d(Float32Array.from(spdInverse(M, n)), [n, n]);
    const cross = tf.mul(tf.matMul(S, tf.transpose(W)), other); // κ V̂ᵀ = S P V̂ᵀ = S Wᵀ (P symmetric), other requests only
    return tf.sub(P ? tf.matMul(S, P) : S, tf.matMul(tf.matMul(cross, Minv), W)) as tf.Tensor2D;
  });
}

/** The preconditioners P of `names` for ridge λ, measured on `prompts`. Caller owns the tensors. */
export function keyPreconditioners(model: ModelView, names: readonly string[], prompts: readonly string[], lam: number): Record<string, tf.Tensor2D> {
  const moments = keySecondMoments(model, names, prompts);
  return Object.fromEntries(names.map((n) => {
    const d = model.params[n].shape[0];
    return [n, tf.tensor2d(Float32Array.from(ridgeInverse(moments[n], d, lam)), [d, d])];
  }));
}
