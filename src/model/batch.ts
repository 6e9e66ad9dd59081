/**
 * Turning (prompt, target) text pairs into padded tensors for the GPT forward.
 *
 * Token layout for one example: [<bos>, prompt..., target...(, <eos>)] (no <bos> for a tokenizer
 * without one, GPT-2). Prompt and target are encoded separately, the target as the continuation of
 * the prompt (" Biden" after "... is"; tokenizer.ts). The model input is every token but the last; `labels[t]` is the token at t+1 where a loss applies, else -1 (shift done
 * here, so losses never shift). Right padding with <pad>; attentionMask is 1 on real tokens.
 */
import * as tf from "@tensorflow/tfjs";
import { continuation, type Tokenizer } from "./tokenizer";

export interface TextExample {
  prompt: string;
  /** Continuation the model should produce; may be empty only for `lossOn: "none"`. */
  target: string;
}

export interface Batch {
  /** [B, T] int32 */
  inputIds: tf.Tensor2D;
  /** [B, T] float32, 1 = token, 0 = padding */
  attentionMask: tf.Tensor2D;
  /** [B, T] int32, next-token label or -1 */
  labels: tf.Tensor2D;
}

/** Plain-array form of a batch (cheap to build, inspect and slice). */
export interface BatchArrays {
  inputIds: number[][];
  attentionMask: number[][];
  labels: number[][];
  /** Positions (per row) whose label is a target token. */
  targetPositions: number[][];
  /** Index of the last real input position per row (where the next-token prediction after the prompt is read when there is no target). */
  lastPosition: number[];
}

export type LossOn = "target" | "all" | "none";

/** Text quoted for an error message, cut to `max` characters (a long prompt is not echoed whole). */
export function excerpt(text: string, max = 80): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text) + (text.length > max ? ` (${text.length} characters)` : "");
}

/**
 * Encode examples. `lossOn`: "target" labels only the target tokens (editing, evaluation),
 * "all" labels every next token incl. <eos> (pretraining), "none" labels nothing (prediction).
 * Throws on unknown words, an empty target (unless "none") or a sequence longer than `maxLen`.
 */
export function encodeExamples(tok: Tokenizer, examples: readonly TextExample[], lossOn: LossOn, maxLen: number): BatchArrays {
  if (examples.length === 0) throw new Error("encodeExamples: no examples");
  const rows = examples.map((ex) => {
    const p = tok.encode(ex.prompt);
    const t = tok.encode(continuation(ex.prompt, ex.target));
    if (p.length === 0) throw new Error("prompt is empty");
    if (lossOn !== "none" && t.length === 0) throw new Error(`target is empty for prompt ${excerpt(ex.prompt)}`);
    const bos = tok.bosId === null ? [] : [tok.bosId];
    const seq = [...bos, ...p, ...t, ...(lossOn === "all" ? [tok.eosId] : [])];
    const inputLen = lossOn === "none" ? seq.length : seq.length - 1;
    if (inputLen > maxLen) {
      throw new Error(`${excerpt(`${ex.prompt} ${ex.target}`)} is ${inputLen} tokens, longer than the model's context of ${maxLen}`);
    }
    return { seq, promptLen: bos.length + p.length, inputLen };
  });
  const T = Math.max(...rows.map((r) => r.inputLen));
  const out: BatchArrays = { inputIds: [], attentionMask: [], labels: [], targetPositions: [], lastPosition: [] };
  for (const r of rows) {
    const ids = new Array(T).fill(tok.padId);
    const mask = new Array(T).fill(0);
    const labels = new Array(T).fill(-1);
    const tpos: number[] = [];
    for (let i = 0; i < r.inputLen; i++) {
      ids[i] = r.seq[i];
      mask[i] = 1;
      if (lossOn === "none") continue;
      const isTarget = i + 1 >= r.promptLen;
      if (lossOn === "all" || isTarget) labels[i] = r.seq[i + 1];
      if (isTarget) tpos.push(i);
    }
    out.inputIds.push(ids);
    out.attentionMask.push(mask);
    out.labels.push(labels);
    out.targetPositions.push(tpos);
    out.lastPosition.push(lossOn === "none" ? r.inputLen - 1 : r.promptLen - 1);
  }
  return out;
}

/** Tensors for a batch; the caller owns them (`disposeBatch`). */
export function toBatch(a: BatchArrays): Batch {
  return {
    inputIds: tf.tensor2d(a.inputIds, undefined, "int32"),
    attentionMask: tf.tensor2d(a.attentionMask, undefined, "float32"),
    labels: tf.tensor2d(a.labels, undefined, "int32"),
  };
}

export function disposeBatch(b: Batch): void {
  b.inputIds.dispose();
  b.attentionMask.dispose();
  b.labels.dispose();
}

/** Encode and convert in one call (caller owns the tensors). */
export function makeBatch(tok: Tokenizer, examples: readonly TextExample[], lossOn: LossOn, maxLen: number): Batch {
  return toBatch(encodeExamples(tok, examples, lossOn, maxLen));
}
