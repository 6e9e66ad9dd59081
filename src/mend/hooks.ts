/**
 * The small named interfaces through which additions to MEND plug into the official algorithm.
 *
 * The core (this folder) implements the paper and the official code; it never asks which addition
 * is active. An editor may carry `hooks` (set by whoever built or loaded it, e.g. src/extensions);
 * every hook left out is the official behaviour:
 *
 *   - `rows`:  which token rows of each edited weight feed the editor
 *              (official: every row whose u and δ are non-zero, factor.ts);
 *   - `lossGroups`: how the edit loss of a call with k requests is grouped
 *              (official: one token-mean over all the call's target tokens);
 *   - `keys`:  a map from the editor's ũ to the key of the update ΔW = α Σ key_i δ̃_iᵀ
 *              (official: the key is ũ itself).
 *
 * At edit time `mendEdit` also takes
 *
 *   - a `StepScale`: a multiple of each request's share of the update (official: none, α for all);
 *   - an `UpdateRule`: the update itself replaced, from the edit's factors and the editor's output,
 *              reading and returning state carried from earlier edits (official: α Ũᵀ Δ̃, no state).
 *
 * Shapes: Nk kept token rows of one edited weight, d_in its input size.
 */
import * as tf from "@tensorflow/tfjs";
import type { Factors } from "./factor";
import type { RunningStats } from "./stats";
import type { Batch } from "../model/batch";
import type { ModelView } from "../model/paramsModel";
import type { Transformed } from "./update";
import type { MethodState } from "../model/languageModel";
import type { LowRankDelta } from "../model/weightUpdate";

/** The kept rows of each edited weight, from the official ones and the labelled (target) rows. */
export type RowSelector = (official: Readonly<Record<string, number[]>>, targetRows: readonly number[]) => Record<string, number[]>;

/**
 * The loss group of each of the batch's `nRows` request rows for the edit gradient; `callGroup` is
 * each row's edit call when one batch holds several independent calls (meta-training). Return
 * undefined for one token-mean over the whole batch.
 */
export type LossGrouping = (nRows: number, callGroup?: readonly number[]) => readonly number[] | undefined;

/** What a key transform may read about the edit call(s). */
export interface KeyContext {
  /** The edited weight. */
  name: string;
  /** The normalisation statistics of the weight's editor net (null when the editor does not normalise). */
  stats: RunningStats | null;
  factors: Factors;
  /** Flattened batch row -> edit call, when one batch holds several calls (meta-training). */
  rowCall?: (row: number) => number;
}

/** ũ [Nk, d_in] -> key [Nk, d_in]. Runs inside the caller's tidy or gradient closure; differentiable. */
export type KeyTransform = (uTilde: tf.Tensor2D, ctx: KeyContext) => tf.Tensor2D;

export interface EditorHooks {
  rows?: RowSelector;
  lossGroups?: LossGrouping;
  keys?: KeyTransform;
  /** What to save with the editor folder so that loading can rebuild these hooks. */
  save?: () => { config: Record<string, unknown>; tensors: Record<string, tf.Tensor> };
  /** Frees what the hooks own (called by `disposeEditor`). */
  dispose?: () => void;
}

/** Per-request step multiples of an edit call's update, from the model, the update and the edit batch. */
export interface StepScales {
  /** One multiple per request (batch row); 1 = the official step. */
  scales: number[];
  /** Whatever the scaling wants to report (kept in the edit's info). */
  [detail: string]: unknown;
}
/** The low-rank update of an edit call (α, keys ũ, values δ̃, each row's request), by weight. */
export type LowRankUpdate = Readonly<Record<string, LowRankDelta>>;
export type StepScale = (model: ModelView, update: LowRankUpdate, batch: Batch) => StepScales;

/** What an update rule reads: the edit's factors u, δ, the editor's output and the official update. */
export interface RuleContext {
  model: ModelView;
  factors: Factors;
  /** ũ (or the keys of a `keys` hook) and δ̃ per weight; owned by the edit. */
  transformed: Readonly<Transformed>;
  /** The official update α Ũᵀ Δ̃ (with step multiples, if any), owned by the rule from here on. */
  update: LowRankUpdate;
  /** What the rule returned with the previous edit of this model, if any. */
  state?: MethodState;
}

/**
 * Replaces MEND's update rule: the update the edit applies (the rule frees what of `ctx.update` it
 * does not return) and the state to carry into the next edit (owned by the edited model).
 */
export type UpdateRule = (ctx: RuleContext) => { update: LowRankUpdate; state?: MethodState };
