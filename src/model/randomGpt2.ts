/**
 * Randomly initialised GPT-2s in the Hugging Face layout, with GPT-2's real tokenizer files: what
 * tests, the "your own GPT-2" notebook and the scale benchmark use instead of downloaded weights.
 * The folder looks like one from the Hub (config.json with the Hub's keys, model.safetensors with
 * the attention-mask buffers, vocab.json, merges.txt and tokenizer.json), optionally with the
 * `transformer.` prefix and in F16 or BF16, so every branch of the loader runs on it.
 */
import * as tf from "@tensorflow/tfjs";
import { gpt2TokenizerFiles, BpeTokenizer } from "./bpeTokenizer";
import { writeFolder } from "./checkpointFolder";
import { GPT2Config, validateConfig } from "./config";
import { initGPT, Params } from "./gpt";
import { RawTensor, encodeSafetensors } from "./safetensors";

/** GPT-2 family shapes (Hugging Face configs), and a tiny one for tests. */
export const GPT2_SHAPES = {
  tiny: { n_embd: 32, n_layer: 4, n_head: 4, n_positions: 128 },
  distilgpt2: { n_embd: 768, n_layer: 6, n_head: 12, n_positions: 1024 },
  gpt2: { n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024 },
  "gpt2-medium": { n_embd: 1024, n_layer: 24, n_head: 16, n_positions: 1024 },
  "gpt2-large": { n_embd: 1280, n_layer: 36, n_head: 20, n_positions: 1024 },
  "gpt2-xl": { n_embd: 1600, n_layer: 48, n_head: 25, n_positions: 1024 },
} as const;
export type Gpt2Shape = keyof typeof GPT2_SHAPES;

const GPT2_VOCAB_SIZE = 50257;

/** A config.json as the Hub's gpt2 has it, for a shape. */
export function hubConfig(shape: Gpt2Shape): GPT2Config & Record<string, unknown> {
  const s = GPT2_SHAPES[shape];
  return {
    activation_function: "gelu_new",
    architectures: ["GPT2LMHeadModel"],
    attn_pdrop: 0.1,
    bos_token_id: 50256,
    embd_pdrop: 0.1,
    eos_token_id: 50256,
    initializer_range: 0.02,
    layer_norm_epsilon: 1e-5,
    model_type: "gpt2",
    n_ctx: s.n_positions,
    ...s,
    resid_pdrop: 0.1,
    tie_word_embeddings: true,
    vocab_size: GPT2_VOCAB_SIZE,
  };
}

export interface RandomGpt2Options {
  shape?: Gpt2Shape;
  seed?: number;
  /** Dtype of the weights in the file (read back as F32). */
  dtype?: "F32" | "F16" | "BF16";
  /** Names as GPT2LMHeadModel saves them ("transformer.h.0...") instead of GPT2Model's. */
  prefix?: boolean;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
const bitsOf = (x: number) => ((F32[0] = x), U32[0]);

/** float32 -> IEEE half bits (round to nearest even). */
function toF16(x: number): number {
  const u = bitsOf(x);
  const sign = (u >>> 16) & 0x8000;
  const e32 = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (e32 === 255) return sign | (mant ? 0x7e00 : 0x7c00);
  const exp = e32 - 127 + 15;
  const round = (m: number, shift: number) => {
    const q = Math.floor(m / 2 ** shift);
    const r = m - q * 2 ** shift;
    const half = 2 ** (shift - 1);
    return r > half || (r === half && q & 1) ? q + 1 : q;
  };
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) return 14 - exp > 24 ? sign : sign | round(mant | 0x800000, 14 - exp); // subnormal (carries into the smallest normal)
  return (sign | (exp << 10)) + round(mant, 13); // a carry moves into the exponent (up to Inf)
}

/** float32 -> bfloat16 bits (round to nearest even). */
function toBF16(x: number): number {
  const u = bitsOf(x);
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

/** The model.safetensors bytes of `params` as the Hub stores them (masked-bias buffers included). */
function hubSafetensors(params: Readonly<Params>, config: GPT2Config, opts: RandomGpt2Options = {}): Buffer {
  const pre = opts.prefix ? "transformer." : "";
  const raw: Record<string, RawTensor | { dtype: "F16" | "BF16"; shape: number[]; data: Uint16Array }> = {};
  for (const [n, t] of Object.entries(params)) {
    const data = t.dataSync() as Float32Array;
    if (!opts.dtype || opts.dtype === "F32") raw[pre + n] = { dtype: "F32", shape: t.shape, data };
    else raw[pre + n] = { dtype: opts.dtype, shape: t.shape, data: Uint16Array.from(data, opts.dtype === "F16" ? toF16 : toBF16) };
  }
  const T = config.n_positions;
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) mask[i * T + j] = 1;
  for (let l = 0; l < config.n_layer; l++) raw[`${pre}h.${l}.attn.bias`] = { dtype: "F32", shape: [1, 1, T, T], data: mask }; // the causal-mask buffer
  return encodeSafetensors(raw as Record<string, RawTensor>, { format: "pt" });
}

/** Random GPT-2 weights of a shape (caller owns them) with their config. */
export function randomGpt2(opts: RandomGpt2Options = {}): { config: GPT2Config; params: Params } {
  const config = validateConfig(hubConfig(opts.shape ?? "tiny"));
  return { config, params: initGPT(config, opts.seed ?? 0) };
}

/** Write a random GPT-2 folder in the Hub's layout to `dir` (as one unit; checkpointFolder.ts). */
export function writeRandomGpt2(dir: string, opts: RandomGpt2Options = {}, write: { check?: () => void } = {}): void {
  const { config, params } = randomGpt2(opts);
  try {
    const tok = gpt2TokenizerFiles();
    writeFolder(
      dir,
      "model",
      {
        "config.json": Buffer.from(JSON.stringify(config, null, 2) + "\n"),
        "model.safetensors": hubSafetensors(params, config, opts),
        "vocab.json": Buffer.from(tok["vocab.json"]),
        "merges.txt": Buffer.from(tok["merges.txt"]),
        "tokenizer.json": Buffer.from(JSON.stringify(BpeTokenizer.tokenizerJson(tok["vocab.json"], tok["merges.txt"]))),
      },
      write,
    );
  } finally {
    tf.dispose(Object.values(params));
  }
}
