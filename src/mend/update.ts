/**
 * The weight update (MEND §3.1, Eq. 2; mend-spec §3.6): for every edited weight W_ℓ [d_in, d_out],
 *
 *     ΔW_ℓ = α_ℓ ∇̃W_ℓ = α_ℓ Σ_i ũ_i δ̃_iᵀ = α_ℓ Ũᵀ Δ̃,        W'_ℓ = W_ℓ + ΔW_ℓ
 *
 * (the official code adds the update; the paper writes W − α∇̃W, and α is learned either way).
 * This file is the one place that forms it. It is used in two evaluation orders of the same product:
 *
 *  - dense (`applyUpdates`): W' = W + α (Ũᵀ Δ̃), for the edit API;
 *  - low-rank (`lowRankFactors`): x W' = x W + (x (αŨ)ᵀ) Δ̃ without forming W', for meta-training,
 *    where one forward runs many examples each with its own edit (a mask keeps them apart).
 *
 * A `rowScale` [Nk, 1] multiplies each token row's term (per-request steps, hooks.ts `StepScale`).
 * Shapes: Nk kept token rows, d_in/d_out of the edited weight.
 */
import * as tf from "@tensorflow/tfjs";
import type { Params } from "../model/gpt";
import type { Editor } from "./editor";

/** The editor's output for one weight: ũ (or the key a hook made of it) [Nk, d_in] and δ̃ [Nk, d_out]. */
export type WeightFactors = {
  uTilde: tf.Tensor2D;
  deltaTilde: tf.Tensor2D;
};
export type Transformed = Record<string, WeightFactors>;

/** ΔW = α Ũᵀ Δ̃ of one weight, unevaluated. */
export interface Update {
  /** α_ℓ (times lrScale), a scalar. */
  alpha: tf.Tensor;
  /** Ũ [Nk, d_in], each row times its rowScale. */
  keys: tf.Tensor2D;
  /** Δ̃ [Nk, d_out] */
  values: tf.Tensor2D;
}

/** An edit call's update as low-rank factors: left = α·ũ [M, d_in], right = δ̃ [M, d_out], and the request of each of the M rows. */
export interface RequestUpdate {
  left: tf.Tensor2D;
  right: tf.Tensor2D;
  request: readonly number[];
}

/**
 * The updates of every edited weight from the editor's output. `lrScale` multiplies every α
 * (test-time `lr_scale` of ROME/EasyEdit, 1 = official); `rowScale` name -> [Nk, 1]. Differentiable.
 */
export function updatesOf(editor: Editor, transformed: Transformed, lrScale = 1, rowScale?: Readonly<Record<string, tf.Tensor2D>>): Record<string, Update> {
  const out: Record<string, Update> = {};
  for (const name of editor.config.innerParams) {
    const { uTilde, deltaTilde } = transformed[name];
    const s = rowScale?.[name];
    out[name] = {
      alpha: lrScale === 1 ? editor.editLrs[name] : tf.mul(editor.editLrs[name], lrScale),
      keys: s ? (tf.mul(uTilde, s) as tf.Tensor2D) : uTilde,
      values: deltaTilde,
    };
  }
  return out;
}

/** ∇̃W = Ũᵀ Δ̃ [d_in, d_out]: the weight's own (Conv1D) shape. @param uTilde [Nk, d_in] @param deltaTilde [Nk, d_out] */
export function pseudoGradient(uTilde: tf.Tensor2D, deltaTilde: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(tf.transpose(uTilde), deltaTilde); // explicit transpose: the fast path on wasm
}

/** ΔW = α Ũᵀ Δ̃ [d_in, d_out]. */
export function denseUpdate(u: Update): tf.Tensor2D {
  return tf.mul(u.alpha, pseudoGradient(u.keys, u.values)) as tf.Tensor2D;
}

/** W' = W + ΔW for every updated weight. @returns weights: name -> W' [d_in, d_out], and deltas: name -> ΔW */
export function applyUpdates(params: Readonly<Params>, updates: Readonly<Record<string, Update>>): { weights: Record<string, tf.Tensor2D>; deltas: Record<string, tf.Tensor2D> } {
  const weights: Record<string, tf.Tensor2D> = {};
  const deltas: Record<string, tf.Tensor2D> = {};
  for (const [name, u] of Object.entries(updates)) {
    deltas[name] = denseUpdate(u);
    weights[name] = tf.add(params[name], deltas[name]) as tf.Tensor2D;
  }
  return { weights, deltas };
}

/** ΔW = leftᵀ right with left = α Ũ [Nk, d_in] and right = Δ̃ [Nk, d_out], for `gptForward({ lowRank })`. */
export function lowRankFactors(u: Update): { left: tf.Tensor2D; right: tf.Tensor2D } {
  return { left: tf.mul(u.alpha, u.keys) as tf.Tensor2D, right: u.values };
}
