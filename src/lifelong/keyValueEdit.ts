/**
 * The training-free edit the lifelong methods share (our addition; docs/deviations.md): MEND's own
 * factors of one weight W [d_in, d_out], with a closed-form solve where MEND runs a trained network.
 *
 * For an edit call, the kept rows are the positions that predict a target token (n of them):
 * u [n, d_in] their inputs to W (the keys) and δ [n, d_out] the gradient of the edit loss at W's
 * output. A step asks W's outputs at those rows to move by R = −η δ̂ (δ̂ = δ scaled per dimension,
 * `KeyValueRule.valueScale`), and a rule turns the keys into a low-rank update that makes that move:
 *
 *     ΔW = Lᵀ C,   C = S⁻¹ R,   L [n, d_in] and S [n, n] from the keys (and the method's state),
 *
 * so u ΔW ≈ R. Steps repeat on the edited model (new δ, same keys: W's input does not depend on W)
 * until every target token is the argmax with probability at least `minProb`, or `maxSteps`; as L
 * is fixed, the edit is one low-rank update Lᵀ (C₁ + C₂ + ...). The rule then commits the edit to
 * its state (running statistics, the keys to protect from later edits).
 *
 * Shapes: n kept rows, d_in and d_out of the edited weight.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeBatch, makeBatch } from "../model/batch";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { gptForward } from "../model/gpt";
import type { MethodState } from "../model/languageModel";
import { applyUpdates, ModelView, ParamsModel } from "../model/paramsModel";
import { LowRankDelta } from "../model/weightUpdate";
import { captureFactors, disposeFactors } from "../mend/factor";
import { targetRows } from "../extensions/targetRows";
import { choleskySolve, cholesky } from "./linalg";

export interface KeyValueConfig {
  /** The edited weight, an MLP output projection ("h.3.mlp.c_proj.weight"): its input does not depend on it. */
  weight: string;
  /** η: the size of one step in W's output, in units of δ̂. */
  stepSize: number;
  /** At most this many steps per edit call. */
  maxSteps: number;
  /** Stop when every target token is the argmax with at least this probability (0: the argmax alone). */
  minProb: number;
}

/** The update's keys and the system of one edit call: ΔW = Lᵀ S⁻¹ R. */
export interface KeySystem {
  /** L [n, d_in] (owned by the caller). */
  keys: tf.Tensor2D;
  /** S [n, n], symmetric positive definite, row-major float64. */
  gram: Float64Array;
}

/** What a lifelong method decides: the keys and system from u, the step's scale, and its state. */
export interface KeyValueRule {
  /** L and S from the edit's keys u [n, d_in] and the method's state (absent at the stream's start). */
  system(u: tf.Tensor2D, state: MethodState | undefined): KeySystem;
  /** Per-dimension divisor of δ [d_out] for the step (owned by the caller), or null for δ / rms(δ). */
  valueScale(state: MethodState | undefined): tf.Tensor1D | null;
  /** The state after this edit (new tensors, owned by the caller), from its keys, first δ and system. */
  commit(u: tf.Tensor2D, delta: tf.Tensor2D, sys: KeySystem, state: MethodState | undefined): MethodState | undefined;
}

export interface KeyValueEdit {
  update: Record<string, LowRankDelta>;
  state?: MethodState;
  /** Steps taken (each a forward/backward on the edit batch). */
  steps: number;
}

/** Whether every target token is the argmax with probability >= minProb under `params`. */
function targetsHeld(model: ModelView, params: ModelView["params"], batch: ReturnType<typeof makeBatch>, labels: number[][], minProb: number): boolean {
  const { am, p } = tf.tidy(() => {
    const logits = gptForward(params, model.config, batch.inputIds, { attentionMask: batch.attentionMask }).logits;
    const probs = tf.softmax(logits);
    const safe = tf.cast(tf.maximum(batch.labels, 0), "int32");
    const pT = tf.sum(tf.mul(probs, tf.oneHot(safe, logits.shape[2])), -1); // p(label) [B, T]
    return { am: tf.argMax(logits, -1).arraySync() as number[][], p: pT.arraySync() as number[][] };
  });
  return labels.every((row, i) => row.every((l, t) => l < 0 || (am[i][t] === l && p[i][t] >= minProb)));
}

/**
 * One edit call of a key-value lifelong method on `model` (never changed). The caller owns the
 * returned update and state.
 */
export function keyValueEdit(model: ModelView, requests: readonly EditRequest[], cfg: KeyValueConfig, rule: KeyValueRule, state: MethodState | undefined): KeyValueEdit {
  validateRequests(requests);
  const w = model.params[cfg.weight];
  if (!w || w.rank !== 2) throw new Error(`lifelong edit: "${cfg.weight}" is not a 2-D weight of this model`);
  if (!/\.mlp\.c_proj\.weight$/.test(cfg.weight)) throw new Error(`lifelong edit: "${cfg.weight}" is not an MLP output projection (h.<i>.mlp.c_proj.weight); its keys must not depend on its own change`);
  const batch = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  const labels = batch.labels.arraySync() as number[][];
  const first = captureFactors(model.params, model.config, batch, [cfg.weight], undefined, "structural", targetRows);
  const u = first.u[cfg.weight];
  const rowReq = first.rows[cfg.weight].map((r) => Math.floor(r / first.seqLen));
  const n = u.shape[0];
  const dOut = w.shape[1] as number;
  let sys: KeySystem | undefined;
  let edited: ParamsModel | undefined;
  const cSum = new Float64Array(n * dOut);
  let steps = 0;
  const scale = rule.valueScale(state);
  try {
    sys = rule.system(u, state);
    const chol = cholesky(sys.gram, n, "the edit's key system");
    let delta: tf.Tensor2D = first.delta[cfg.weight];
    for (;;) {
      const r = tf.tidy(() => {
        const d = scale ? tf.div(delta, scale) : tf.div(delta, tf.add(tf.sqrt(tf.mean(tf.square(delta))), 1e-12));
        return tf.mul(d, -cfg.stepSize).dataSync() as Float32Array;
      });
      const c = choleskySolve(chol, n, Float64Array.from(r), dOut);
      for (let i = 0; i < c.length; i++) cSum[i] += c[i];
      steps++;
      edited?.dispose();
      const values = tf.tensor2d(Float32Array.from(cSum), [n, dOut]);
      edited = applyUpdates(model, [{ [cfg.weight]: { alpha: 1, keys: sys.keys, values, requests: rowReq } }]);
      values.dispose();
      if (delta !== first.delta[cfg.weight]) delta.dispose();
      if (steps >= cfg.maxSteps || targetsHeld(model, edited.params, batch, labels, cfg.minProb)) break;
      const f = captureFactors(edited.params, model.config, batch, [cfg.weight], undefined, "structural", targetRows);
      tf.dispose(f.u[cfg.weight]);
      delta = f.delta[cfg.weight];
    }
    const newState = rule.commit(u, first.delta[cfg.weight], sys, state);
    const values = tf.tensor2d(Float32Array.from(cSum), [n, dOut]);
    const update = { [cfg.weight]: { alpha: 1, keys: sys.keys, values, requests: rowReq } };
    sys = undefined; // its keys now belong to the update
    return { update, ...(newState ? { state: newState } : {}), steps };
  } finally {
    edited?.dispose();
    if (sys) sys.keys.dispose();
    scale?.dispose();
    disposeFactors(first);
    disposeBatch(batch);
  }
}
