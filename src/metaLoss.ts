/**
 * MEND's meta-training objective (MEND Eq. 4; mend-spec §5.2):
 *
 *     L = c_edit · L_edit + c_loc · L_loc
 *     L_edit = −(1/|y'|) Σ log p_θ'(y'_e | x'_e)          (target tokens of the equivalent input)
 *     L_loc  = mean over non-pad positions of KL( p_θ(·|x_loc) ‖ p_θ'(·|x_loc) )
 *
 * θ' are the edited weights from the editor; the pre-edit locality logits are constants.
 * Defaults c_edit = 0.1, c_loc = 1.0 (the paper's and official values).
 */
import * as tf from "@tensorflow/tfjs";
import { Batch } from "./batch";
import { GPT2Config } from "./config";
import { gptForward, Params } from "./gpt";
import { meanKl, meanNll } from "./loss";

export interface MetaLossConfig {
  cEdit: number;
  cLoc: number;
  /**
   * Meta-training batches of edit calls with k ≥ 1 edits each: "call" (default) averages the
   * per-edit losses within a call, then over calls (every call counts once); "edit" averages over
   * all edits (a call of 25 edits counts 25 times a single edit).
   */
  weighting?: "call" | "edit";
}

export const DEFAULT_META_LOSS_CONFIG: Readonly<MetaLossConfig> = Object.freeze({ cEdit: 0.1, cLoc: 1.0 });

/** L_edit: mean NLL of the target tokens under the edited weights. Scalar. */
export function editLoss(params: Readonly<Params>, config: GPT2Config, batch: Batch, edited: Readonly<Params>): { loss: tf.Scalar; logits: tf.Tensor3D } {
  const { logits } = gptForward(params, config, batch.inputIds, { attentionMask: batch.attentionMask, replace: edited });
  return { loss: meanNll(logits, batch.labels), logits };
}

/**
 * L_loc: KL(pre ‖ post) averaged over every non-pad position of x_loc (logits not shifted, as the
 * official code does for decoder-only models). @param preLogits [B, T, V], constants.
 */
export function locLoss(params: Readonly<Params>, config: GPT2Config, batch: Batch, edited: Readonly<Params>, preLogits: tf.Tensor3D): { loss: tf.Scalar; logits: tf.Tensor3D } {
  const { logits } = gptForward(params, config, batch.inputIds, { attentionMask: batch.attentionMask, replace: edited });
  return { loss: meanKl(preLogits, logits, batch.attentionMask), logits };
}

/** Pre-edit logits of the locality batch (constants for L_loc). Caller owns the result. */
export function preEditLogits(params: Readonly<Params>, config: GPT2Config, batch: Batch): tf.Tensor3D {
  return tf.tidy(() => gptForward(params, config, batch.inputIds, { attentionMask: batch.attentionMask }).logits);
}

/** Total meta-loss and its parts. Differentiable in whatever `edited` depends on. */
export function metaLoss(
  params: Readonly<Params>,
  config: GPT2Config,
  edited: Readonly<Params>,
  editOuter: Batch,
  loc: Batch,
  preLocLogits: tf.Tensor3D,
  c: MetaLossConfig = DEFAULT_META_LOSS_CONFIG,
): { total: tf.Scalar; lEdit: tf.Scalar; lLoc: tf.Scalar; outerLogits: tf.Tensor3D; locLogits: tf.Tensor3D } {
  const e = editLoss(params, config, editOuter, edited);
  const l = locLoss(params, config, loc, edited, preLocLogits);
  const total = tf.add(tf.mul(c.cEdit, e.loss), tf.mul(c.cLoc, l.loss)) as tf.Scalar;
  return { total, lEdit: e.loss, lLoc: l.loss, outerLogits: e.logits, locLogits: l.logits };
}
