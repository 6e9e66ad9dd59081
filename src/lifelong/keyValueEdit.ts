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
 * Several weights (MEMIT's spreading, as AlphaEdit's official AlphaEdit_main.py:205-263 does it):
 * within each step the weights are edited lowest block first; weight i of k takes 1/(k − i) of what
 * is left of the move, R_i = −η δ̂_top / (k − i), where δ_top is the gradient at the highest edited
 * weight's output (the residual stream the official target z sits in), and both δ_top and weight i's
 * keys are taken again on the model with the lower weights' changes of this step made. The lowest
 * weight's keys never change (nothing below it is edited), so a one-weight edit is one low-rank
 * update Lᵀ (C₁ + C₂ + ...); an upper weight's update stacks one piece of keys per step. A rule
 * that `commitsEditedKeys` (AlphaEdit) commits the keys of the model as edited, the others the keys
 * of the edit's start. The loop's check is on the model with all of them edited.
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
  /**
   * The state after this edit (new tensors, owned by the caller), from its keys u (of the edited model
   * when `commitsEditedKeys`, else of the edit's start) and first δ.
   */
  commit(u: tf.Tensor2D, delta: tf.Tensor2D, state: MethodState | undefined): MethodState | undefined;
  /** Commit the keys taken on the model as edited (AlphaEdit_main.py:261-263), not those of the edit's start. */
  commitsEditedKeys?: boolean;
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
  // Lowest block first: a weight's keys depend on the changes below it only.
  const order = weights.map((w, i) => ({ w, i, block: Number(/^h\.(\d+)\./.exec(w)?.[1] ?? i) })).sort((x, y) => x.block - y.block);
  const top = order[order.length - 1].w;
  const first = captureFactors(model.params, model.config, batch, weights, undefined, "structural", targetRows);
  const states = weights.map((w) => weightState(state, weights, w));
  const n = first.u[weights[0]].shape[0];
  const rowReq = first.rows[weights[0]].map((r) => Math.floor(r / first.seqLen));
  // Per weight: the pieces of its update, ΔW = Σ Lₚᵀ Cₚ (the lowest weight's keys never change: one piece, C summed).
  const pieces = weights.map(() => [] as { keys: tf.Tensor2D; c: Float64Array }[]);
  let edited: ParamsModel | undefined;
  let steps = 0;
  const updateOf = () =>
    Object.fromEntries(
      weights.flatMap((name, l) => {
        const p = pieces[l];
        if (!p.length) return []; // not yet edited in this edit's first step
        const dOut = model.params[name].shape[1] as number;
        const keys = p.length === 1 ? tf.clone(p[0].keys) : tf.concat(p.map((x) => x.keys), 0);
        const values = tf.tensor2d(Float32Array.from(p.flatMap((x) => Array.from(x.c))), [p.length * n, dOut]);
        return [[name, { alpha: 1, keys: keys as tf.Tensor2D, values, requests: p.flatMap(() => rowReq) }]];
      }),
    );
  const disposeUpdate = (u: Record<string, LowRankDelta>) => tf.dispose(Object.values(u).flatMap((d) => [d.keys, d.values]));
  const modelWith = () => {
    const u = updateOf();
    try {
      return applyUpdates(model, [u]);
    } finally {
      disposeUpdate(u);
    }
  };
  try {
    for (;;) {
      for (let k = 0; k < order.length; k++) {
        const { w, i } = order[k];
        const f = steps === 0 && k === 0 ? null : captureFactors((edited ?? model).params, model.config, batch, [...new Set([w, top])], undefined, "structural", targetRows);
        try {
          const u = (f ?? first).u[w];
          const dTop = (f ?? first).delta[top];
          if (u.shape[0] !== n || dTop.shape[0] !== n) throw new Error(`lifelong edit: the edit's rows changed from ${n} to ${u.shape[0]} (${w})`);
          const sys = rules[i].system(u, first.delta[w], states[i]);
          try {
            const r = tf.tidy(() => {
              const dh = sys.direction ? sys.direction(dTop) : tf.div(dTop, tf.add(tf.sqrt(tf.mean(tf.square(dTop))), 1e-12));
              return tf.mul(dh, -cfg.stepSize / (order.length - k)).dataSync() as Float32Array;
            });
            const dOut = model.params[w].shape[1] as number;
            const c = choleskySolve(cholesky(sys.gram, n, `the edit's key system of ${w}`), n, Float64Array.from(r), dOut);
            if (k === 0 && pieces[i].length) {
              const sum = pieces[i][0].c;
              for (let j = 0; j < c.length; j++) sum[j] += c[j];
            } else {
              pieces[i].push({ keys: tf.clone(sys.keys), c });
            }
          } finally {
            tf.dispose([sys.keys, ...(sys.held ?? [])]);
          }
        } finally {
          if (f) disposeFactors(f);
        }
        const next = modelWith();
        edited?.dispose();
        edited = next;
      }
      steps++;
      if (steps >= cfg.maxSteps || targetsHeld(model, edited!.params, batch, labels, cfg.minProb)) break;
    }
    const committedKeys = rules.some((r) => r.commitsEditedKeys) ? captureFactors(edited!.params, model.config, batch, weights, undefined, "structural", targetRows) : null;
    try {
      const newState = joinStates(
        weights,
        weights.map((w, i) => rules[i].commit((rules[i].commitsEditedKeys ? committedKeys! : first).u[w], first.delta[w], states[i])),
      );
      return { update: updateOf(), ...(newState ? { state: newState } : {}), steps };
    } finally {
      if (committedKeys) disposeFactors(committedKeys);
    }
  } finally {
    edited?.dispose();
    for (const p of pieces) tf.dispose(p.map((x) => x.keys));
    disposeFactors(first);
    disposeBatch(batch);
  }
}
