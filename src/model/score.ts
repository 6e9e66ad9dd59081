/**
 * Reading predictions out of any model (languageModel.ts), from its logits: next-token top-k and
 * distributions for prompts, teacher-forced scores of target continuations (exact match of every
 * target token, token accuracy, probabilities), KL between two models, and corpus NLL.
 * Everything runs in `tf.tidy` and returns plain numbers.
 */
import * as tf from "@tensorflow/tfjs";
import { BatchArrays, encodeExamples, TextExample, toBatch, disposeBatch } from "./batch";
import { continuation } from "./tokenizer";
import { GPT2Config } from "./config";
import type { LanguageModel } from "./languageModel";
import { labelMask, oneHotFloat, tokenKl, tokenNll } from "./loss";

/** Elements of the [rows, T, vocab] logits one scoring pass may hold (64 MB of float32). */
const LOGITS_BUDGET = 2 ** 24;

/**
 * Rows (texts) per forward pass for this model: `max`, fewer for a large vocabulary so that a pass's
 * logits stay near LOGITS_BUDGET for texts of up to 32 tokens (GPT-2's 50257 tokens: 10 rows; the
 * facts world's model: `max`). wasm has 4 GB of memory in all.
 */
export function rowsPerPass(config: GPT2Config, max = 128): number {
  return Math.max(1, Math.min(max, Math.floor(LOGITS_BUDGET / (32 * config.vocab_size))));
}

export interface TopK {
  prompt: string;
  tokens: string[];
  ids: number[];
  top: { token: string; id: number; prob: number }[];
}

/** Next-token probabilities [B, V] after each prompt of a chunk, and the chunk's encoding. Caller owns the tensor. */
function nextTokenProbChunk(m: LanguageModel, prompts: readonly string[]): { probs: tf.Tensor2D; a: BatchArrays } {
  const a = encodeExamples(m.tokenizer, prompts.map((p) => ({ prompt: p, target: "" })), "none", m.config.n_positions);
  const b = toBatch(a);
  try {
    const probs = tf.tidy(() => {
      const logits = m.logits(b, a);
      const last = a.lastPosition.map((t, i) => tf.slice(logits, [i, t, 0], [1, 1, -1]).reshape([-1]));
      return tf.softmax(tf.stack(last)) as tf.Tensor2D; // [B, V]
    });
    return { probs, a };
  } finally {
    disposeBatch(b);
  }
}

/** Top-k next tokens after each prompt (prompts are prefixed with <bos> where the tokenizer has one). */
export function nextTokenTopK(m: LanguageModel, prompts: readonly string[], k = 5, batchSize = 128): TopK[] {
  const out: TopK[] = [];
  const rows = rowsPerPass(m.config, batchSize);
  for (let s = 0; s < prompts.length; s += rows) {
    const chunk = prompts.slice(s, s + rows);
    const { probs, a } = nextTokenProbChunk(m, chunk);
    const { values, indices } = tf.topk(probs, Math.min(k, m.tokenizer.size));
    const v = values.arraySync() as number[][];
    const ix = indices.arraySync() as number[][];
    tf.dispose([probs, values, indices]);
    chunk.forEach((p, i) => {
      const ids = a.inputIds[i].slice(0, a.lastPosition[i] + 1);
      out.push({ prompt: p, ids, tokens: ids.map((id) => m.tokenizer.token(id)), top: ix[i].map((id, j) => ({ token: m.tokenizer.token(id), id, prob: v[i][j] })) });
    });
  }
  return out;
}

/** The whole next-token distribution after each prompt: one Float32Array of `tokenizer.size` probabilities per prompt. */
export function nextTokenProbs(m: LanguageModel, prompts: readonly string[], batchSize = 128): Float32Array[] {
  const out: Float32Array[] = [];
  const rows = rowsPerPass(m.config, batchSize);
  for (let s = 0; s < prompts.length; s += rows) {
    const { probs } = nextTokenProbChunk(m, prompts.slice(s, s + rows));
    const V = probs.shape[1];
    const data = probs.dataSync() as Float32Array;
    probs.dispose();
    for (let i = 0; i * V < data.length; i++) out.push(data.slice(i * V, i * V + m.tokenizer.size));
  }
  return out;
}

/**
 * Greedy continuations: after each prompt, up to `maxTokens` most likely next tokens, stopping at
 * the end-of-text token. Returns the generated text (the tokens decoded, without the prompt).
 */
export function greedyContinuation(m: LanguageModel, prompts: readonly string[], maxTokens = 12): string[] {
  const tok = m.tokenizer;
  return prompts.map((prompt) => {
    const ids: number[] = [];
    const text = () => (ids.length ? prompt + continuation(prompt, tok.decode(ids)) : prompt);
    while (ids.length < maxTokens && tok.encode(text()).length + 1 < m.config.n_positions) {
      const [p] = nextTokenProbs(m, [text()]);
      let best = 0;
      for (let id = 1; id < p.length; id++) if (p[id] > p[best]) best = id;
      if (best === tok.eosId) break;
      ids.push(best);
    }
    return tok.decode(ids);
  });
}

export interface TargetScore {
  /** Every target token is the teacher-forced argmax (the paper's edit success). */
  exact: boolean;
  /** Fraction of target tokens that are the argmax (EasyEdit's token-level accuracy). */
  tokenAcc: number;
  /** p(first target token | prompt). */
  firstProb: number;
  /** Σ log p(target tokens) (teacher forced). */
  logProb: number;
  /** Argmax token ids at the target positions. */
  argmax: number[];
}

/** Teacher-forced scores of `target` after `prompt` for each example. */
export function scoreTargets(m: LanguageModel, examples: readonly TextExample[], batchSize = 128): TargetScore[] {
  const out: TargetScore[] = [];
  const rows = rowsPerPass(m.config, batchSize);
  for (let s = 0; s < examples.length; s += rows) {
    const chunk = examples.slice(s, s + rows);
    const a = encodeExamples(m.tokenizer, chunk, "target", m.config.n_positions);
    const b = toBatch(a);
    const [logp, am] = tf.tidy(() => {
      const logits = m.logits(b, a);
      const lp = tf.logSoftmax(logits); // [B, T, V]
      const onehot = oneHotFloat(tf.maximum(b.labels, 0), m.config.vocab_size);
      return [tf.sum(tf.mul(lp, onehot), -1), tf.argMax(logits, -1)]; // [B, T], [B, T]
    });
    disposeBatch(b);
    const lpArr = logp.arraySync() as number[][];
    const amArr = am.arraySync() as number[][];
    tf.dispose([logp, am]);
    chunk.forEach((_, i) => {
      const pos = a.targetPositions[i];
      const hits = pos.map((t) => amArr[i][t] === a.labels[i][t]);
      out.push({
        exact: hits.every(Boolean),
        tokenAcc: hits.filter(Boolean).length / hits.length,
        firstProb: Math.exp(lpArr[i][pos[0]]),
        logProb: pos.reduce((acc, t) => acc + lpArr[i][t], 0),
        argmax: pos.map((t) => amArr[i][t]),
      });
    });
  }
  return out;
}

/**
 * Mean KL(p_pre ‖ p_post) over the non-pad positions of each example's full text (prompt + target),
 * the same quantity as MEND's L_loc, per example. The two models share a tokenizer.
 */
export function klPerExample(pre: LanguageModel, post: LanguageModel, examples: readonly TextExample[], batchSize = 128): number[] {
  const out: number[] = [];
  const rows = rowsPerPass(pre.config, batchSize);
  for (let s = 0; s < examples.length; s += rows) {
    const chunk = examples.slice(s, s + rows);
    const arrays = encodeExamples(pre.tokenizer, chunk, "target", pre.config.n_positions);
    const b = toBatch(arrays);
    const kl = tf.tidy(() => {
      const a = pre.logits(b, arrays);
      const c = post.logits(b, arrays);
      const perPos = tf.mul(tokenKl(a, c), b.attentionMask); // [B, T]
      return tf.div(tf.sum(perPos, 1), tf.sum(b.attentionMask, 1)); // [B]
    });
    disposeBatch(b);
    out.push(...(kl.dataSync() as Float32Array));
    kl.dispose();
  }
  return out;
}

/** Summed NLL and token count of full sentences (every next token incl. <eos>), for perplexity. */
export function corpusNll(m: LanguageModel, examples: readonly TextExample[], batchSize = 128): { nll: number; tokens: number } {
  let nll = 0;
  let tokens = 0;
  const rows = rowsPerPass(m.config, batchSize);
  for (let s = 0; s < examples.length; s += rows) {
    const arrays = encodeExamples(m.tokenizer, examples.slice(s, s + rows), "all", m.config.n_positions);
    const b = toBatch(arrays);
    const [sum, count] = tf.tidy(() => {
      const logits = m.logits(b, arrays);
      return [tf.sum(tokenNll(logits, b.labels)), tf.sum(labelMask(b.labels))];
    });
    disposeBatch(b);
    nll += sum.dataSync()[0];
    tokens += count.dataSync()[0];
    tf.dispose([sum, count]);
  }
  return { nll, tokens };
}
