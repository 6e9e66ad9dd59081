/**
 * The fine-tuning baselines (MEND App. C.1; mend-spec §8.5):
 *  - FT: fine-tune MEND's edited matrices on the edit example(s) until every target token is the
 *    argmax or `maxSteps` is reached (at most 100 steps, stop at argmax);
 *  - FT+KL: the same with the locality term, L = c_edit·NLL(edit) + KL(pre ‖ post on locality text)
 *    (c_edit = 1e-2 for the small models).
 *
 * Scaled to the toy model (docs/deviations.md): the official code fine-tunes with RMSprop (PyTorch
 * defaults), lr 1e-6 for the small models, which cannot move our toy model in 100 steps. FT keeps
 * RMSprop with the largest lr that keeps validation locality >= 0.99 (experiments/ft-lr-sweep):
 * 4e-4. FT+KL's locality text is a fixed sample of training-split world sentences (the paper uses
 * the dataset's locality text).
 *
 * The tuned variables are the updates ΔW themselves (initialised to 0; the forward uses W + ΔW), so
 * the edit is returned as a value, dense ΔW per weight (model/weightUpdate.ts), and the edited model
 * W + ΔW is exactly the model the last step evaluated. The gradient w.r.t. ΔW is the gradient w.r.t.
 * W, so the optimiser steps are those of tuning W directly.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeBatch, makeBatch, TextExample } from "../model/batch";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { gptForward } from "../model/gpt";
import { meanKl, meanNll } from "../model/loss";
import { ModelView } from "../model/paramsModel";
import { DenseDelta } from "../model/weightUpdate";

export interface FineTuneResult {
  /** ΔW of every tuned weight (owned by the result: `disposeUpdate`). */
  update: Record<string, DenseDelta>;
  latencyMs: number;
  /** Optimizer steps taken. */
  steps: number;
}

export interface FineTuneConfig {
  /** Weights to fine-tune (MEND's edited weights). */
  innerParams: string[];
  lr: number;
  /** "rmsprop" (the official code's and our default: PyTorch defaults, decay 0.99, ε 1e-8) or "adam". */
  optimizer?: FineTuneOptimizer;
  maxSteps: number;
  /** null: plain FT. A number: FT+KL with L = cEdit·NLL + KL(locality). */
  cEdit: number | null;
  /** Locality text for FT+KL (full sentences; KL over every non-pad position). */
  locTexts: TextExample[];
  /**
   * Stop as soon as every target token is the argmax (default true, the paper's FT baseline); false
   * takes exactly `maxSteps` steps (to compare objectives at a fixed budget).
   */
  stopAtArgmax?: boolean;
}

export type FineTuneOptimizer = "adam" | "rmsprop";

/** Throws a clear error for an lr that is not a positive number or an unknown optimiser. */
export function validateFineTune(cfg: { lr: number; optimizer?: string }): void {
  if (!(Number.isFinite(cfg.lr) && cfg.lr > 0)) throw new Error(`FT lr must be a positive number, got ${cfg.lr}`);
  if (cfg.optimizer !== undefined && cfg.optimizer !== "adam" && cfg.optimizer !== "rmsprop") throw new Error(`unknown FT optimizer "${cfg.optimizer}" (adam | rmsprop)`);
}

/**
 * The optimiser of a fine-tuning run. RMSprop as PyTorch's defaults (the official FT baseline's):
 * decay 0.99, no momentum, ε 1e-8 added to √v; tfjs adds its ε inside the root, hence 1e-16.
 */
function makeOptimizer(kind: FineTuneOptimizer, lr: number): tf.Optimizer {
  return kind === "adam" ? tf.train.adam(lr) : tf.train.rmsprop(lr, 0.99, 0, 1e-16);
}

export const DEFAULT_FT_CONFIG: Readonly<Required<Omit<FineTuneConfig, "innerParams" | "locTexts">>> = Object.freeze({ lr: 4e-4, optimizer: "rmsprop" as FineTuneOptimizer, maxSteps: 100, cEdit: null, stopAtArgmax: true });

/**
 * Fine-tune `innerParams` on the requests (one mean loss over all their target tokens) until every
 * target token of every request is the argmax, or `maxSteps`. Pure: the model is not modified;
 * `applyUpdates(model, [result.update])` is the fine-tuned model.
 */
export function fineTuneEdit(model: ModelView, requests: readonly EditRequest[], cfg: FineTuneConfig): FineTuneResult {
  validateRequests(requests);
  validateFineTune(cfg);
  const t0 = performance.now();
  const opt = makeOptimizer(cfg.optimizer ?? DEFAULT_FT_CONFIG.optimizer, cfg.lr); // holds no tensors until its first step
  const b = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  const loc = cfg.cEdit !== null && cfg.locTexts.length ? makeBatch(model.tokenizer, cfg.locTexts, "target", model.config.n_positions) : null;
  const preLoc = loc ? tf.tidy(() => gptForward(model.params, model.config, loc.inputIds, { attentionMask: loc.attentionMask }).logits) : null;
  const deltas: Record<string, tf.Variable> = {};
  for (const n of cfg.innerParams) {
    const w = model.params[n];
    if (!w || w.rank !== 2) throw new Error(`FT: "${n}" is not a 2-D weight of the model`);
    const zero = tf.zerosLike(w);
    deltas[n] = tf.variable(zero, true);
    zero.dispose(); // the variable keeps its own reference to the data
  }
  const replace = () => Object.fromEntries(cfg.innerParams.map((n) => [n, tf.add(model.params[n], deltas[n])])); // W + ΔW
  const labels = b.labels.arraySync() as number[][];
  let steps = 0;
  try {
    for (; steps <= cfg.maxSteps; steps++) {
      let am: tf.Tensor | null = null;
      const { value, grads } = tf.variableGrads(() => {
        const w = replace();
        const { logits } = gptForward(model.params, model.config, b.inputIds, { attentionMask: b.attentionMask, replace: w });
        am = tf.keep(tf.argMax(logits, -1));
        const nll = meanNll(logits, b.labels);
        if (!loc || !preLoc) return nll;
        const post = gptForward(model.params, model.config, loc.inputIds, { attentionMask: loc.attentionMask, replace: w }).logits;
        return tf.add(tf.mul(cfg.cEdit!, nll), meanKl(preLoc, post, loc.attentionMask)) as tf.Scalar;
      }, Object.values(deltas));
      const argmax = am!.arraySync() as number[][];
      tf.dispose([am!, value]);
      const done = cfg.stopAtArgmax !== false && labels.every((row, i) => row.every((l, t) => l < 0 || argmax[i][t] === l));
      if (done || steps === cfg.maxSteps) {
        tf.dispose(Object.values(grads));
        break;
      }
      opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
      tf.dispose(Object.values(grads));
    }
  } finally {
    opt.dispose();
    disposeBatch(b);
    if (loc) disposeBatch(loc);
    preLoc?.dispose();
  }
  const update: Record<string, DenseDelta> = {};
  for (const [n, v] of Object.entries(deltas)) {
    update[n] = { delta: tf.clone(v) as tf.Tensor2D };
    v.dispose();
  }
  return { update, latencyMs: performance.now() - t0, steps };
}

