/**
 * The weight update (MEND §3.1, Eq. 2; mend-spec §3.6): for every edited weight W_ℓ [d_in, d_out],
 *
 *     ΔW_ℓ = α_ℓ ∇̃W_ℓ = α_ℓ Σ_i ũ_i δ̃_iᵀ = α_ℓ Ũᵀ Δ̃,        W'_ℓ = W_ℓ + ΔW_ℓ
 *
 * (the official code adds the update; the paper writes W − α∇̃W, and α is learned either way).
 * This file forms it from the editor's output, differentiably in φ and α, in two evaluation orders
 * of the same product:
 *
 *  - dense (`denseUpdate`): α (Ũᵀ Δ̃), for W' itself;
 *  - low-rank (`lowRankFactors`): x W' = x W + (x (αŨ)ᵀ) Δ̃ without forming W', for meta-training,
 *    where one forward runs many examples each with its own edit (a mask keeps them apart).
 *
 * The edit API returns the same update as a value (α a number, Ũ and Δ̃ as tensors: model/weightUpdate.ts).
 * Shapes: Nk kept token rows, d_in/d_out of the edited weight.
 */
import * as tf from "@tensorflow/tfjs";

/** The editor's output for one weight: ũ (or the key a hook made of it) [Nk, d_in] and δ̃ [Nk, d_out]. */
export type WeightFactors = {
  uTilde: tf.Tensor2D;
  deltaTilde: tf.Tensor2D;
};
export type Transformed = Record<string, WeightFactors>;

/** ΔW = α Ũᵀ Δ̃ of one weight, unevaluated and differentiable. */
export interface Update {
  /** α_ℓ (times lrScale), a scalar. */
  alpha: tf.Tensor;
  /** Ũ [Nk, d_in], each row times its step multiple (hooks.ts `StepScale`), if any. */
  keys: tf.Tensor2D;
  /** Δ̃ [Nk, d_out] */
  values: tf.Tensor2D;
}

/** ∇̃W = Ũᵀ Δ̃ [d_in, d_out]: the weight's own (Conv1D) shape. @param uTilde [Nk, d_in] @param deltaTilde [Nk, d_out] */
export function pseudoGradient(uTilde: tf.Tensor2D, deltaTilde: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(tf.transpose(uTilde), deltaTilde); // explicit transpose: the fast path on wasm
}

/** ΔW = α Ũᵀ Δ̃ [d_in, d_out]. */
export function denseUpdate(u: Update): tf.Tensor2D {
  return tf.mul(u.alpha, pseudoGradient(u.keys, u.values)) as tf.Tensor2D;
}

/** ΔW = leftᵀ right with left = α Ũ [Nk, d_in] and right = Δ̃ [Nk, d_out], for `gptForward({ lowRank })`. */
export function lowRankFactors(u: Update): { left: tf.Tensor2D; right: tf.Tensor2D } {
  return { left: tf.mul(u.alpha, u.keys) as tf.Tensor2D, right: u.values };
}
