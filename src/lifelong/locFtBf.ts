/**
 * Fine-tuning done right, LocFT-BF (after "Fine-tuning Done Right in Model Editing", arXiv
 * 2509.22072; the rule of its official fine-tune.py, ICT-STAR/LocFT): plain fine-tuning of one chosen
 * weight, breadth-first. Each edit call fine-tunes ΔW of that weight over every edit so far (the
 * earlier ones are the method's state: it remembers the requests, not their updates), epoch after
 * epoch, each epoch over all of them in shuffled mini-batches:
 *  - a mini-batch's loss is the mean over its examples of each example's token-mean NLL of the target;
 *  - a mini-batch whose loss is already below 1e-2 (p ≈ 0.99 per target token) takes no step;
 *  - the call stops after the first epoch whose average mini-batch loss (weighted by size) is below
 *    1e-2, or after `maxEpochs`.
 * Depth-first fine-tuning (the FT baseline: one edit until it holds, then the next) is what
 * collapses in a stream; breadth-first revisits the earlier edits and keeps them.
 * (Where ours differs from the official file, docs/deviations.md: the target carries no end-of-text
 * token, and lr, batch size and epochs are the facts world's.)
 *
 * The update is dense ΔW of the tuned weight (model/weightUpdate.ts; of each, when several are
 * named), the model `model` + ΔW.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeBatch, makeBatch } from "../model/batch";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { gptForward } from "../model/gpt";
import type { MethodState } from "../model/languageModel";
import { exampleMeanNll } from "../model/loss";
import { ModelView } from "../model/paramsModel";
import { Rng } from "../model/rng";
import { DenseDelta } from "../model/weightUpdate";

export const LOC_FT_BF = "LocFT-BF";

/** fine-tune.py: a mini-batch below this loss takes no step; an epoch whose average is below it ends the call. */
export const LOC_FT_BF_LOSS_STOP = 1e-2;

export interface LocFtBfConfig {
  /** The tuned weights (2-D; the method tunes one, as in its paper; several are allowed). */
  weights: readonly string[];
  lr: number;
  batchSize: number;
  maxEpochs: number;
}

/** The requests an earlier edit left in the state (oldest first). */
export function rememberedRequests(state: MethodState | undefined): EditRequest[] {
  const r = state?.meta.requests;
  return Array.isArray(r) ? (r as EditRequest[]) : [];
}

/**
 * One edit call: fine-tune ΔW of `cfg.weights` breadth-first on the state's requests and these.
 * Pure: `model` is not changed. The caller owns the update and the state.
 */
export function locFtBfEdit(model: ModelView, requests: readonly EditRequest[], cfg: LocFtBfConfig, state: MethodState | undefined): { update: Record<string, DenseDelta>; state: MethodState; steps: number; epochs: number } {
  validateRequests(requests);
  if (cfg.weights.length === 0) throw new Error("LocFT-BF: no weight to tune was named");
  for (const name of cfg.weights) {
    const w = model.params[name];
    if (!w || w.rank !== 2) throw new Error(`LocFT-BF: "${name}" is not a 2-D weight of this model`);
  }
  const all = [...rememberedRequests(state), ...requests];
  const rng = new Rng(all.length);
  const opt = tf.train.adam(cfg.lr);
  const deltas = cfg.weights.map((name) => {
    const zero = tf.zerosLike(model.params[name]);
    const v = tf.variable(zero, true);
    zero.dispose(); // the variable keeps its own reference to the data
    return v;
  });
  const params = () => ({ ...model.params, ...Object.fromEntries(cfg.weights.map((name, i) => [name, tf.add(model.params[name], deltas[i])])) });
  const lossOf = (batch: ReturnType<typeof makeBatch>) => exampleMeanNll(gptForward(params(), model.config, batch.inputIds, { attentionMask: batch.attentionMask }).logits, batch.labels);
  let steps = 0;
  let epochs = 0;
  try {
    while (epochs < cfg.maxEpochs) {
      epochs++;
      let sum = 0;
      const order = rng.shuffle(all.map((_, j) => j));
      for (let i = 0; i < order.length; i += cfg.batchSize) {
        const chunk = order.slice(i, i + cfg.batchSize).map((j) => all[j]);
        const b = makeBatch(model.tokenizer, chunk, "target", model.config.n_positions);
        try {
          const t = tf.tidy(() => lossOf(b)); // forward only: most batches of a long stream take no step
          const loss = t.dataSync()[0];
          t.dispose();
          sum += loss * chunk.length;
          if (loss >= LOC_FT_BF_LOSS_STOP) {
            opt.minimize(() => lossOf(b), false, deltas);
            steps++;
          }
        } finally {
          disposeBatch(b);
        }
      }
      if (sum / all.length < LOC_FT_BF_LOSS_STOP) break;
    }
    const update = Object.fromEntries(cfg.weights.map((name, i) => [name, { delta: tf.clone(deltas[i]) as tf.Tensor2D }]));
    return { update, state: { method: LOC_FT_BF, meta: { requests: all.map((r) => ({ prompt: r.prompt, target: r.target })) }, tensors: {} }, steps, epochs };
  } finally {
    opt.dispose();
    tf.dispose(deltas); // also when tuning fails
  }
}
