/**
 * What every evaluator needs from a model, whatever the edits did to it: the next-token logits of
 * an encoded batch. Scores of target tokens, next-token distributions, predictions, KL and
 * perplexity are computed from these logits once, in score.ts, for every kind of model:
 *
 *  - a parameter record (paramsModel.ts): the base model, or weights a method changed (MEND, FT);
 *  - a model whose forward pass an edit changed without touching its weights (a cache of edits
 *    that answers the queries near a stored edit).
 *
 * An `EditedModel` is a model after some edits (zero for the base): it owns what the edits made
 * (new weights, a cache, a method's state) and frees exactly that with `dispose`, never the base's
 * tensors. A method that carries state from one edit to the next (the keys of earlier edits,
 * running statistics) keeps it on the model it returns, as a `MethodState`.
 *
 * Shapes: B batch, T time, V vocabulary.
 */
import type * as tf from "@tensorflow/tfjs";
import type { Batch, BatchArrays } from "./batch";
import type { GPT2Config } from "./config";
import type { Tokenizer } from "./tokenizer";

export interface LanguageModel {
  readonly config: GPT2Config;
  readonly tokenizer: Tokenizer;
  /**
   * Next-token logits [B, T, V] of a batch (`arrays` is the same batch as plain arrays: the prompt
   * of row b ends at `arrays.lastPosition[b]` when the batch was encoded with targets). Runs inside
   * the caller's `tf.tidy`; the caller owns the result.
   */
  logits(batch: Batch, arrays: BatchArrays): tf.Tensor3D;
}

/** What a method carries from one edit to the next: its own tensors and plain settings. */
export interface MethodState {
  /** The method whose state this is. */
  readonly method: string;
  /** Owned by the model that carries the state. */
  readonly tensors: Readonly<Record<string, tf.Tensor>>;
  /** JSON-serialisable. */
  readonly meta: Readonly<Record<string, unknown>>;
}

export interface EditedModel extends LanguageModel {
  /** The state the method that made this model carries into its next edit, if any. */
  readonly state?: MethodState;
  /** Frees what this model owns (never the base model's tensors). */
  dispose(): void;
}
