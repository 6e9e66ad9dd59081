/**
 * Fine-tuning done right, LocFT-BF-style (our addition after "Fine-tuning Done Right in Model
 * Editing", arXiv 2509.22072; the recipe, not their code): plain fine-tuning of one chosen weight,
 * breadth-first. Each edit call fine-tunes ΔW of that weight over the edits so far (the earlier ones
 * are the method's state: it remembers the requests, not their updates), epoch after epoch: each
 * epoch checks every edit so far and tunes, in shuffled mini-batches, on those whose target is not
 * the argmax (the new one at first, then any earlier one the tuning broke), pass after pass until
 * they hold (at most 10 passes), until all hold or `maxEpochs`. (Tuning only on the failing edits, not on all of them, is ours: it keeps an edit call
 * linear in the stream's length instead of quadratic, at the same stopping rule.)
 * Depth-first fine-tuning (the FT baseline: one edit until it holds, then the next) is what
 * collapses in a stream; breadth-first revisits the earlier edits and keeps them.
 *
 * The update is dense ΔW of the tuned weight (model/weightUpdate.ts; of each, when several are
 * named), the model `model` + ΔW.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeBatch, makeBatch } from "../model/batch";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { gptForward } from "../model/gpt";
import type { MethodState } from "../model/languageModel";
import { meanNll } from "../model/loss";
import { ModelView, ParamsModel } from "../model/paramsModel";
import { Rng } from "../model/rng";
import { scoreTargets } from "../model/score";
import { DenseDelta } from "../model/weightUpdate";

export const LOC_FT_BF = "LocFT-BF";

/** Passes over the failing edits between two checks of every edit so far. */
const INNER_PASSES = 10;

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

/** The requests (indices) whose target is not yet the argmax under `params` (score.ts `exact`). */
function wrongRequests(model: ModelView, params: ModelView["params"], requests: readonly EditRequest[]): number[] {
  return scoreTargets(new ParamsModel(model.config, params, model.tokenizer), requests).flatMap((s, i) => (s.exact ? [] : [i]));
}

/**
 * One edit call: fine-tune ΔW of `cfg.weights` breadth-first on the state's requests and these.
 * Pure: `model` is not changed. The caller owns the update and the state.
 */
export function locFtBfEdit(model: ModelView, requests: readonly EditRequest[], cfg: LocFtBfConfig, state: MethodState | undefined): { update: Record<string, DenseDelta>; state: MethodState; steps: number } {
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
  const disposeTuned = (p: ModelView["params"]) => tf.dispose(cfg.weights.map((name) => p[name]));
  let steps = 0;
  try {
    for (let epoch = 0; epoch < cfg.maxEpochs; epoch++) {
      const current = tf.tidy(() => params());
      const wrong = wrongRequests(model, current, all);
      disposeTuned(current);
      if (wrong.length === 0) break;
      // Tune on the failing edits, mini-batch after mini-batch, until they hold (at most `innerPasses` passes), then check all again.
      let failing = wrong;
      for (let pass = 0; pass < INNER_PASSES && failing.length; pass++) {
        const order = rng.shuffle(failing);
        for (let i = 0; i < order.length; i += cfg.batchSize) {
          const b = makeBatch(model.tokenizer, order.slice(i, i + cfg.batchSize).map((j) => all[j]), "target", model.config.n_positions);
          opt.minimize(() => meanNll(gptForward(params(), model.config, b.inputIds, { attentionMask: b.attentionMask }).logits, b.labels), false, deltas);
          disposeBatch(b);
          steps++;
        }
        const now = tf.tidy(() => params());
        const still = wrongRequests(model, now, failing.map((j) => all[j]));
        disposeTuned(now);
        failing = still.map((k) => failing[k]);
      }
    }
    const update = Object.fromEntries(cfg.weights.map((name, i) => [name, { delta: tf.clone(deltas[i]) as tf.Tensor2D }]));
    return { update, state: { method: LOC_FT_BF, meta: { requests: all.map((r) => ({ prompt: r.prompt, target: r.target })) }, tensors: {} }, steps };
  } finally {
    opt.dispose();
    tf.dispose(deltas); // also when tuning fails
  }
}
