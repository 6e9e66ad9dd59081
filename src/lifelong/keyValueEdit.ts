/**
 * The training-free edit the lifelong methods share (our addition; docs/deviations.md): MEND's own
 * factors of one weight W [d_in, d_out] (or of several, below), with a closed-form solve where MEND
 * runs a trained network.
 *
 * For an edit call, the kept rows are the positions that predict a target token (n of them):
 * u [n, d_in] their inputs to W (the keys) and δ [n, d_out] the gradient of the edit loss at W's
 * output. A step asks W's outputs at those rows to move by R = −η δ̂ (δ̂ the rule's direction,
 * `KeySystem.direction`, or δ / rms(δ)), and a rule turns the keys into a low-rank update that makes
 * that move:
 *
 *     ΔW = Lᵀ C,   C = S⁻¹ R,   L [n, d_in] and S [n, n] from the keys (and the method's state),
 *
 * so u ΔW ≈ R. Steps repeat on the edited model (new δ, same keys: W's input does not depend on W)
 * until every target token is the argmax with probability at least `minProb`, or `maxSteps`; as L
 * is fixed, the edit is one low-rank update Lᵀ (C₁ + C₂ + ...). The rule then commits the edit to
 * its state (running statistics, the keys to protect from later edits).
 *
 * Several weights (MEMIT's spreading, after Meng et al., "Mass-Editing Memory in a Transformer",
 * ICLR 2023; not their code): each weight W_l has its own keys, rule and state, and a step moves each
 * one's outputs by R_l = −(η / k) δ̂_l, k weights sharing the step; the loop's check is on the model
 * with all of them edited. A lower weight's update changes a higher one's keys; the keys stay the
 * ones of the edit's start (the closed loop corrects what they miss).
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
  /**
   * The edited weights, MLP output projections ("h.3.mlp.c_proj.weight"; their inputs do not depend
   * on their own change), each with its own rule and state.
   */
  weights: readonly string[];
  /** η: the size of one step in the weights' outputs, in units of δ̂, shared evenly between them. */
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
  /** δ̂ [n, d_out] of a step from δ [n, d_out] (a new tensor); absent: δ / rms(δ). */
  direction?: (delta: tf.Tensor2D) => tf.Tensor2D;
  /** Tensors `direction` reads (owned by the caller, with `keys`). */
  held?: tf.Tensor[];
}

/** What a lifelong method decides: the keys, system and step direction from u and δ, and its state. */
export interface KeyValueRule {
  /** The system of an edit from its keys u [n, d_in], first δ [n, d_out] and the method's state (absent at the stream's start). */
  system(u: tf.Tensor2D, delta: tf.Tensor2D, state: MethodState | undefined): KeySystem;
  /** The state after this edit (new tensors, owned by the caller), from its keys, first δ and system. */
  commit(u: tf.Tensor2D, delta: tf.Tensor2D, sys: KeySystem, state: MethodState | undefined): MethodState | undefined;
}

export interface KeyValueEdit {
  update: Record<string, LowRankDelta>;
  state?: MethodState;
  /** Steps taken (each a forward/backward on the edit batch). */
  steps: number;
}

/**
 * The state of `weight` inside the state of a several-weight edit: its tensors are kept as
 * "<weight>/<name>" and its meta under the weight's name. With one weight the state is the rule's own.
 * The result shares the tensors of `state`.
 */
export function weightState(state: MethodState | undefined, weights: readonly string[], weight: string): MethodState | undefined {
  if (!state || weights.length === 1) return state;
  const prefix = `${weight}/`;
  const tensors = Object.fromEntries(Object.entries(state.tensors).filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
  const meta = state.meta[weight] as Record<string, unknown> | undefined;
  return meta === undefined ? undefined : { method: state.method, meta, tensors };
}

/** The state of a several-weight edit from each weight's (`weightState`'s inverse; takes the tensors over). */
function joinStates(weights: readonly string[], states: readonly (MethodState | undefined)[]): MethodState | undefined {
  if (weights.length === 1) return states[0];
  const first = states.find((s) => s);
  if (!first) return undefined;
  const tensors: Record<string, tf.Tensor> = {};
  const meta: Record<string, unknown> = {};
  states.forEach((s, i) => {
    if (!s) return;
    meta[weights[i]] = s.meta;
    for (const [k, t] of Object.entries(s.tensors)) tensors[`${weights[i]}/${k}`] = t;
  });
  return { method: first.method, meta, tensors };
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
 * One edit call of a key-value lifelong method on `model` (never changed): `rules[l]` edits
 * `cfg.weights[l]`. The caller owns the returned update and state.
 */
export function keyValueEdit(model: ModelView, requests: readonly EditRequest[], cfg: KeyValueConfig, rules: readonly KeyValueRule[], state: MethodState | undefined): KeyValueEdit {
  validateRequests(requests);
  const { weights } = cfg;
  if (weights.length === 0) throw new Error("lifelong edit: no weight to edit was named");
  if (rules.length !== weights.length) throw new Error(`lifelong edit: ${weights.length} weights but ${rules.length} rules`);
  if (new Set(weights).size !== weights.length) throw new Error(`lifelong edit: a weight is named twice in ${weights.join(", ")}`);
  for (const name of weights) {
    const w = model.params[name];
    if (!w || w.rank !== 2) throw new Error(`lifelong edit: "${name}" is not a 2-D weight of this model`);
    if (!/\.mlp\.c_proj\.weight$/.test(name)) throw new Error(`lifelong edit: "${name}" is not an MLP output projection (h.<i>.mlp.c_proj.weight); its keys must not depend on its own change`);
  }
  const batch = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  const labels = batch.labels.arraySync() as number[][];
  const first = captureFactors(model.params, model.config, batch, weights, undefined, "structural", targetRows);
  const states = weights.map((w) => weightState(state, weights, w));
  const layers = weights.map((name) => {
    const n = first.u[name].shape[0];
    const dOut = model.params[name].shape[1] as number;
    return { name, n, dOut, rowReq: first.rows[name].map((r) => Math.floor(r / first.seqLen)), cSum: new Float64Array(n * dOut) };
  });
  const systems: (KeySystem | undefined)[] = [];
  let edited: ParamsModel | undefined;
  let steps = 0;
  const updateOf = () =>
    Object.fromEntries(layers.map((l, i) => [l.name, { alpha: 1, keys: systems[i]!.keys, values: tf.tensor2d(Float32Array.from(l.cSum), [l.n, l.dOut]), requests: l.rowReq }]));
  try {
    layers.forEach((l, i) => systems.push(rules[i].system(first.u[l.name], first.delta[l.name], states[i])));
    const chols = layers.map((l, i) => cholesky(systems[i]!.gram, l.n, `the edit's key system of ${l.name}`));
    let delta: Record<string, tf.Tensor2D> = first.delta;
    for (;;) {
      layers.forEach((l, i) => {
        const r = tf.tidy(() => {
          const d = delta[l.name];
          const dir = systems[i]!.direction;
          const dh = dir ? dir(d) : tf.div(d, tf.add(tf.sqrt(tf.mean(tf.square(d))), 1e-12));
          return tf.mul(dh, -cfg.stepSize / layers.length).dataSync() as Float32Array;
        });
        const c = choleskySolve(chols[i], l.n, Float64Array.from(r), l.dOut);
        for (let j = 0; j < c.length; j++) l.cSum[j] += c[j];
      });
      steps++;
      edited?.dispose();
      const update = updateOf();
      edited = applyUpdates(model, [update]);
      tf.dispose(Object.values(update).map((d) => d.values));
      if (delta !== first.delta) tf.dispose(Object.values(delta));
      if (steps >= cfg.maxSteps || targetsHeld(model, edited.params, batch, labels, cfg.minProb)) break;
      const f = captureFactors(edited.params, model.config, batch, weights, undefined, "structural", targetRows);
      tf.dispose(Object.values(f.u));
      delta = f.delta;
    }
    const newState = joinStates(
      weights,
      layers.map((l, i) => rules[i].commit(first.u[l.name], first.delta[l.name], systems[i]!, states[i])),
    );
    const update = updateOf();
    for (const sys of systems) tf.dispose(sys?.held ?? []);
    systems.length = 0; // their keys now belong to the update
    return { update, ...(newState ? { state: newState } : {}), steps };
  } finally {
    edited?.dispose();
    for (const s of systems) tf.dispose([...(s ? [s.keys] : []), ...(s?.held ?? [])]);
    disposeFactors(first);
    disposeBatch(batch);
  }
}
