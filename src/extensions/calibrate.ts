/**
 * Edit-time step calibration: our deviation from the official MEND code (opt-in; `mendEdit` with
 * `{ stepScale: calibration(c) }`, `mend edit --calibrate`, methods "MEND-cal" and "MEND-batch-cal"
 * in `mend eval`).
 *
 * The official edit is W' = W + α∇̃W with the learned α, the same for every edit. How far that step
 * overshoots varies per edit: on the shipped editor the smallest multiple s of α∇̃W that makes the edit
 * prompt right is 0.2-0.7 for most test edits (median 0.41), and the overshoot is what moves the
 * neighbours. Calibration scales each request's share of the step, ∇̃W = Σ_b Σ_{i ∈ b} ũ_i δ̃_iᵀ:
 *
 *   s*_b = the smallest s in (0, maxScale] at which every target token of request b is the argmax
 *          with request b's rows scaled by s (found to ~3%, below),
 *   W'   = W + α Σ_b margin·s*_b Σ_{i ∈ b} ũ_i δ̃_iᵀ.
 *
 * Only the edit example is used (as FT's "until the target is the argmax"); the margin (> 1) is what
 * carries the edit to paraphrases. A request no searched step makes right keeps the official step
 * (s = 1, `found: false`). The step is not monotone in general (the Biden edit is right from 0.6α to
 * 1.5α and wrong again at 2α), so s* is the first right step of an ascending search, not a threshold
 * beyond which every step is right. In a call of k requests all k are searched at once, each request
 * with its own candidates in every copy (so the others' rows sit at their own candidates, not at
 * their final steps; the batch editor decorrelates requests, which keeps that cross-talk small).
 *
 * Each search round is one batched forward in which every candidate is one copy of the edit call:
 * the update enters as low-rank factors (gptForward `lowRank`) whose mask holds, per token row and
 * update row, the candidate step of the update row's request in that copy, so no weight is formed
 * per candidate. Three rounds of 5 + 4 + 4 copies cost about as much as the edit itself.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch } from "../model/batch";
import { gptForward, LowRankTerm } from "../model/gpt";
import { ModelView } from "../model/paramsModel";
import { StepScale } from "../mend/hooks";
import { LowRankUpdate as EditUpdate } from "../mend/hooks";

export interface StepCalibration {
  /** Multiple of the smallest right step that is applied (> 0; 1 = just right). */
  margin: number;
  /** Largest step multiple searched (> 0). */
  maxScale: number;
}

/**
 * The margins, chosen per shipped editor on the validation edits (README): the smallest margin whose
 * held-out paraphrase success is >= 0.95. checkpoints/editor: x1.2 / 1.3 / 1.4 / 1.5 give 0.909 /
 * 0.959 / 0.977 / 0.988 (locality 0.993 / 0.989 / 0.985 / 0.984). checkpoints/editor-batch: x1.3 /
 * 1.4 / 1.5 give 0.921 / 0.957 / 0.969 (locality 0.996 / 0.996 / 0.993).
 */
export const DEFAULT_CALIBRATION: Readonly<StepCalibration> = Object.freeze({ margin: 1.3, maxScale: 2 });
export const BATCH_EDITOR_CALIBRATION: Readonly<StepCalibration> = Object.freeze({ margin: 1.4, maxScale: 2 });

export interface CalibrationResult {
  /** Per request: the applied multiple of its α∇̃W share, margin·s*, or 1 when none was found. */
  scales: number[];
  /** Per request: s*, the smallest right step multiple (NaN when none was found). */
  thresholds: number[];
  found: boolean[];
}


const ROUND = 4;

function validateCalibration(c: StepCalibration): void {
  if (!(Number.isFinite(c.margin) && c.margin > 0)) throw new Error(`calibration margin must be a positive number, got ${c.margin}`);
  if (!(Number.isFinite(c.maxScale) && c.maxScale > 0)) throw new Error(`calibration maxScale must be a positive number, got ${c.maxScale}`);
}

/**
 * For each copy g: is every target token of request b the argmax when request b' 's rows are scaled
 * by scales[g][b'] (for every b')? `labels`: the batch's labels, when the caller has read them.
 * `calls` (request -> edit call; meta-training, where one batch holds independent edits): request b
 * then sees only the rows of requests in its own call; without it the batch is one call.
 * @param scales [G][B] @returns [G][B]
 */
export function rightAtScales(model: ModelView, update: EditUpdate, batch: Batch, scales: readonly (readonly number[])[], labels = batch.labels.arraySync() as number[][], calls?: readonly number[]): boolean[][] {
  const [B, T] = batch.inputIds.shape;
  const G = scales.length;
  const argmax = tf.tidy(() => {
    const masks = new Map<string, tf.Tensor2D>(); // one mask per distinct row layout (most edited weights share one)
    const maskFor = (request: readonly number[]) => {
      const key = request.join(",");
      if (!masks.has(key)) {
        const M = request.length;
        const mask = new Float32Array(G * B * T * M); // [G·B·T, M]: copy g's rows use scales[g][request of update row]
        for (let g = 0; g < G; g++) {
          for (let b = 0; b < B; b++) {
            const row = request.map((j) => (!calls || calls[j] === calls[b] ? scales[g][j] : 0));
            for (let t = 0; t < T; t++) mask.set(row, ((g * B + b) * T + t) * M);
          }
        }
        masks.set(key, tf.tensor2d(mask, [G * B * T, M]));
      }
      return masks.get(key)!;
    };
    const lowRank: Record<string, LowRankTerm> = {};
    for (const [name, { alpha, keys, values, requests }] of Object.entries(update)) lowRank[name] = { left: tf.mul(alpha, keys) as tf.Tensor2D, right: values, mask: maskFor(requests) };
    const ids = tf.tile(batch.inputIds, [G, 1]) as tf.Tensor2D; // [G·B, T]
    const attn = tf.tile(batch.attentionMask, [G, 1]) as tf.Tensor2D;
    return tf.argMax(gptForward(model.params, model.config, ids, { attentionMask: attn, lowRank }).logits, -1); // [G·B, T]
  });
  const am = argmax.arraySync() as number[][];
  argmax.dispose();
  return scales.map((_, g) => labels.map((row, b) => row.every((l, t) => l < 0 || am[g * B + b][t] === l)));
}

/**
 * s*_b for every request by a batched search: the powers maxScale·2^-i (i = 4..0) first, then twice
 * `ROUND` points inside each request's bracket (last wrong, first right], geometric (linear when the
 * bracket starts at 0); the bracket ends 2^(1/25) ≈ 1.03 wide. @returns per request s*, or NaN
 */
export function smallestRightSteps(isRight: (scales: number[][]) => boolean[][], B: number, maxScale: number): number[] {
  const start = [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1].map((f) => f * maxScale);
  const lo = new Array<number>(B).fill(0);
  const hi = new Array<number>(B).fill(NaN);
  let cand = start.map((s) => new Array<number>(B).fill(s)); // [G][B]
  for (let round = 0; round < 3; round++) {
    const right = isRight(cand);
    for (let b = 0; b < B; b++) {
      if (round > 0 && Number.isNaN(hi[b])) continue; // never right at maxScale: nothing to refine
      const g = right.findIndex((r) => r[b]);
      if (g >= 0) {
        if (g > 0) lo[b] = cand[g - 1][b];
        hi[b] = cand[g][b];
      } else if (round > 0) lo[b] = cand[cand.length - 1][b];
    }
    cand = Array.from({ length: ROUND }, (_, j) =>
      lo.map((l, b) => {
        if (Number.isNaN(hi[b])) return 1; // never right: rides along at the official step it will keep
        const h = hi[b];
        return l === 0 ? (h * (j + 1)) / (ROUND + 1) : l * (h / l) ** ((j + 1) / (ROUND + 1));
      }),
    );
  }
  return hi;
}

/**
 * The calibrated per-request step multiples of one edit call (see the file comment), or of several
 * independent calls in one batch (`calls`: request -> call, as in rightAtScales).
 */
export function calibrateSteps(model: ModelView, update: EditUpdate, batch: Batch, c: StepCalibration, calls?: readonly number[]): CalibrationResult {
  validateCalibration(c);
  const labels = batch.labels.arraySync() as number[][]; // read once for the three rounds
  const s = smallestRightSteps((scales) => rightAtScales(model, update, batch, scales, labels, calls), labels.length, c.maxScale);
  const found = s.map((x) => !Number.isNaN(x));
  return { scales: s.map((x, b) => (found[b] ? c.margin * x : 1)), thresholds: s, found };
}

/** Calibration as the edit API's `StepScale` (src/mend/hooks.ts): `mendEdit(model, editor, requests, { stepScale: calibration(c) })`. */
export function calibration(c: StepCalibration): StepScale {
  validateCalibration(c);
  return (model, update, batch) => ({ ...calibrateSteps(model, update, batch, c) });
}

/** The calibration of an edit made with `stepScale: calibration(c)`, or undefined. */
export function calibrationOf(info: { stepScales?: Record<string, unknown> }): CalibrationResult | undefined {
  const s = info.stepScales;
  return s && Array.isArray(s.thresholds) && Array.isArray(s.found) ? (s as unknown as CalibrationResult) : undefined;
}
