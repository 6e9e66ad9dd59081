/**
 * Parameter-backed models: GPT-2 as a parameter record (gpt.ts) with its config and tokenizer.
 *
 *  - `ModelView` is what a method that takes gradients needs: the config, the parameter record and
 *    the tokenizer (MEND reads u and δ of the base weights; FT tunes them).
 *  - `ParamsModel` is a `ModelView` that is also an `EditedModel` (languageModel.ts): its logits are
 *    the forward pass of its parameters, and it owns the tensors it was given (`owned`), e.g. the
 *    edited weights of an edit, while the rest of the record is shared with the model it came from.
 *
 * `applyUpdates` turns weight updates (weightUpdate.ts) into the edited model W + ΔW_1 + ... .
 */
import * as tf from "@tensorflow/tfjs";
import type { Batch } from "./batch";
import type { GPT2Config } from "./config";
import { gptForward, Params, releaseTransposes } from "./gpt";
import type { EditedModel, MethodState } from "./languageModel";
import type { Tokenizer } from "./tokenizer";
import { ModelUpdate, updatedWeights } from "./weightUpdate";

export interface ModelView {
  config: GPT2Config;
  params: Readonly<Params>;
  tokenizer: Tokenizer;
}

export class ParamsModel implements ModelView, EditedModel {
  readonly state?: MethodState;
  private readonly owned: tf.Tensor[];

  /**
   * @param owned tensors of `params` (or of `state`) that this model owns and `dispose` frees; the
   *   rest of `params` belongs to whoever made them (the base model).
   */
  constructor(readonly config: GPT2Config, readonly params: Readonly<Params>, readonly tokenizer: Tokenizer, opts: { owned?: readonly tf.Tensor[]; state?: MethodState } = {}) {
    this.owned = [...(opts.owned ?? []), ...Object.values(opts.state?.tensors ?? {})];
    if (opts.state) this.state = opts.state;
  }

  /** [B, T, V] logits of the parameters' forward pass. Inside the caller's tidy; the caller owns them. */
  logits(batch: Batch): tf.Tensor3D {
    return gptForward(this.params, this.config, batch.inputIds, { attentionMask: batch.attentionMask }).logits;
  }

  dispose(): void {
    releaseTransposes(this.owned);
    tf.dispose(this.owned);
    this.owned.length = 0;
  }

  /**
   * For a chain of edits that keeps only its newest model: frees what this model owns, except the
   * tensors `next` still uses (weights it did not replace, state it carries on), which `next` owns
   * from now on.
   */
  handOver(next: ParamsModel): void {
    const used = new Set<tf.Tensor>([...Object.values(next.params), ...Object.values(next.state?.tensors ?? {})]);
    const kept = this.owned.filter((t) => used.has(t));
    const freed = this.owned.filter((t) => !used.has(t));
    next.owned.push(...kept.filter((t) => !next.owned.includes(t)));
    releaseTransposes(freed);
    tf.dispose(freed);
    this.owned.length = 0;
  }
}

/** Frees `old` for a chain of edits that keeps only `next` (which may use some of `old`'s tensors). */
export function replaceModel(old: EditedModel, next: EditedModel): void {
  if (old instanceof ParamsModel && next instanceof ParamsModel) old.handOver(next);
  else old.dispose();
}

/** The view as a language model: itself when it is a `ParamsModel`, else one that owns nothing. */
export function paramsModel(view: ModelView): ParamsModel {
  return view instanceof ParamsModel ? view : new ParamsModel(view.config, view.params, view.tokenizer);
}

/**
 * The model W + ΔW_1 + ΔW_2 + ... (weightUpdate.ts, added in order) over `model`'s weights; it owns
 * the new weights (and `state`'s tensors), shares the rest with `model`.
 */
export function applyUpdates(model: ModelView, updates: readonly ModelUpdate[], state?: MethodState): ParamsModel {
  const weights = updatedWeights(model.params, updates);
  return new ParamsModel(model.config, { ...model.params, ...weights }, model.tokenizer, { owned: Object.values(weights), state });
}

/** The model with some weights replaced (`weights` become owned by it). */
export function withWeights(model: ModelView, weights: Readonly<Record<string, tf.Tensor>>, state?: MethodState): ParamsModel {
  for (const [n, w] of Object.entries(weights)) {
    const old = model.params[n];
    if (!old) throw new Error(`"${n}" is not a weight of this model`);
    if (old.shape.join("x") !== w.shape.join("x")) throw new Error(`"${n}" is [${old.shape}], its replacement [${w.shape}]`);
  }
  return new ParamsModel(model.config, { ...model.params, ...weights }, model.tokenizer, { owned: Object.values(weights), state });
}
