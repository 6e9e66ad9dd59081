/**
 * Token-level losses shared by pretraining, editing and MEND's meta-loss (mend-spec §5.2).
 *
 * Labels are aligned with logits: `labels[b, t]` is the token that position t should predict
 * (the next token), or -1 where nothing is predicted (prompt, padding). Batches are built already
 * shifted (see batch.ts), so no shifting happens here.
 */
import * as tf from "@tensorflow/tfjs";

/** [B, T] float mask of the positions with a label. */
export function labelMask(labels: tf.Tensor2D): tf.Tensor2D {
  return tf.cast(tf.greaterEqual(labels, 0), "float32") as tf.Tensor2D;
}

/** -log p(label) at each position, [B, T]; 0 where the label is -1. */
export function tokenNll(logits: tf.Tensor3D, labels: tf.Tensor2D): tf.Tensor2D {
  const V = logits.shape[2];
  const logp = tf.logSoftmax(logits); // [B, T, V]
  const onehot = oneHotFloat(tf.maximum(labels, 0), V); // [B, T, V]
  const nll = tf.neg(tf.sum(tf.mul(logp, onehot), -1)); // [B, T]
  return tf.mul(nll, labelMask(labels)) as tf.Tensor2D;
}

/** Mean NLL over all labelled tokens of the batch (MEND's edit loss convention). Scalar. */
export function meanNll(logits: tf.Tensor3D, labels: tf.Tensor2D): tf.Scalar {
  const m = labelMask(labels);
  return tf.div(tf.sum(tokenNll(logits, labels)), tf.maximum(tf.sum(m), 1)) as tf.Scalar;
}

/**
 * The mean over the batch's rows of each row's mean NLL over its own labelled tokens (LocFT-BF's
 * loss: every example weighs the same, however many tokens its target has). Scalar.
 */
export function exampleMeanNll(logits: tf.Tensor3D, labels: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const perRow = tf.div(tf.sum(tokenNll(logits, labels), 1), tf.maximum(tf.sum(labelMask(labels), 1), 1)); // [B]
    return tf.mean(perRow) as tf.Scalar;
  });
}

/**
 * Σ over groups of each group's mean NLL over its labelled tokens. Scalar. `group[r]` is the group
 * of batch row r. With one group this is `meanNll` (the official edit loss of one edit call, k
 * requests included). Meta-training runs several independent edit calls in one batch; per-group
 * means give each call's δ exactly the scale it would have alone.
 */
export function groupedMeanNll(logits: tf.Tensor3D, labels: tf.Tensor2D, group: readonly number[]): tf.Scalar {
  return tf.tidy(() => {
    const s = tf.sum(tokenNll(logits, labels), 1); // [R]
    const c = tf.sum(labelMask(labels), 1); // [R]
    const oh = tf.cast(tf.oneHot(tf.tensor1d(group as number[], "int32"), Math.max(2, Math.max(...group) + 1)), "float32") as tf.Tensor2D; // [R, G] (tfjs needs depth >= 2; an empty group is harmless)
    const perGroup = tf.matMul(tf.transpose(oh), tf.reshape(c, [-1, 1])); // [G, 1] labelled tokens per group
    const perRow = tf.reshape(tf.matMul(oh, perGroup), [-1]); // [R]
    return tf.sum(tf.div(s, tf.maximum(perRow, 1))) as tf.Scalar;
  });
}

/**
 * KL(pre ‖ post) per position, [B, T]: Σ_v p_pre (log p_pre − log p_post). `pre` is the reference
 * (mend-spec §5.2), its logits are treated as constants by the caller.
 */
export function tokenKl(preLogits: tf.Tensor3D, postLogits: tf.Tensor3D): tf.Tensor2D {
  const lpPre = tf.logSoftmax(preLogits);
  const lpPost = tf.logSoftmax(postLogits);
  return tf.sum(tf.mul(tf.exp(lpPre), tf.sub(lpPre, lpPost)), -1) as tf.Tensor2D;
}

/** Masked mean of KL(pre ‖ post) over the positions where `mask` is 1 (every non-pad token). Scalar. */
export function meanKl(preLogits: tf.Tensor3D, postLogits: tf.Tensor3D, mask: tf.Tensor2D): tf.Scalar {
  const kl = tokenKl(preLogits, postLogits);
  return tf.div(tf.sum(tf.mul(kl, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
}

/**
 * One-hot rows as float32, [...ids.shape, depth]. Built as int32 and cast: on the wasm backend
 * `tf.oneHot(..., "float32")` returns int32 bits labelled float32 (tfjs 4.22), i.e. ~1e-45 values.
 */
export function oneHotFloat(ids: tf.Tensor, depth: number): tf.Tensor {
  return tf.cast(tf.oneHot(tf.cast(ids, "int32"), depth), "float32");
}
