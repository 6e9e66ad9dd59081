/**
 * Model folders in the Hugging Face layout: `config.json` (GPT2Config keys), `model.safetensors`
 * (HF `GPT2Model` names, Conv1D layout [in, out]) and the tokenizer's files (tokenizer.ts): the
 * facts world's `vocab.json`, or GPT-2's `vocab.json` + `merges.txt` / `tokenizer.json`.
 * Loading accepts the `transformer.` prefix that `GPT2LMHeadModel` files carry and ignores the
 * tied `lm_head.weight`. Everything is validated against the config with errors that name the
 * problem (shapes, non-finite weights, duplicate vocabulary entries); a folder is saved as one unit
 * with a manifest that loading checks (checkpointFolder.ts).
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { GPT2Config, validateConfig } from "./config";
import { disposeParams, Params, paramShapes } from "./gpt";
import { RawTensor, SafetensorsFile, encodeSafetensors } from "./safetensors";
import { verifyFolder, writeFolder } from "./checkpointFolder";
import { Tokenizer } from "./tokenizer";
import { ModelView, ParamsModel } from "./paramsModel";
import { BpeTokenizer } from "./bpeTokenizer";
import { WordTokenizer } from "./wordTokenizer";

/** A loaded model: it owns all its parameters (`dispose` frees them). */
export type Model = ParamsModel;

/**
 * The tokenizer of a model folder: `tokenizer.json` or `vocab.json` + `merges.txt` (GPT-2 BPE),
 * else `vocab.json` (the word tokenizer). Errors name the file.
 */
export function loadTokenizer(dir: string): Tokenizer {
  const has = (n: string) => fs.existsSync(path.join(dir, n));
  if (has("tokenizer.json") || has("merges.txt")) return BpeTokenizer.fromFolder(dir);
  const vocabFile = path.join(dir, "vocab.json");
  if (!has("vocab.json")) throw new Error(`${dir}: no tokenizer (expected tokenizer.json, vocab.json + merges.txt, or the word tokenizer's vocab.json)`);
  const text = fs.readFileSync(vocabFile, "utf8");
  try {
    return WordTokenizer.fromJSON(JSON.parse(text), text);
  } catch (e) {
    throw new Error(`${vocabFile}: ${(e as Error).message.replace(/^vocab\.json: /, "")}`);
  }
}

/** The files of a model folder besides the tokenizer's (`loadTokenizer`). */
export const MODEL_FILES = ["config.json", "model.safetensors"] as const;

function readJson(file: string): unknown {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** Index of the first NaN or ±Inf in `x`, or -1. */
export function firstNonFinite(x: ArrayLike<number>): number {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i;
  return -1;
}

/** Where weights come from: a safetensors file read one tensor at a time, or tensors in memory. */
interface TensorSource {
  names: string[];
  shape(name: string): number[];
  dtype(name: string): string;
  read(name: string): RawTensor;
}

const inMemory = (raw: Record<string, RawTensor>): TensorSource => ({ names: Object.keys(raw), shape: (n) => raw[n].shape, dtype: (n) => raw[n].dtype, read: (n) => raw[n] });

/**
 * Validated tensors for `config` from a source (caller owns them). Names and shapes are checked from
 * the header first; then tensors are read, checked for NaN/Inf and uploaded one at a time, so a
 * checkpoint never sits in memory twice.
 */
function paramsFromSource(src: TensorSource, config: GPT2Config, file: string): Params {
  const expected = paramShapes(config);
  const fileName: Record<string, string> = {}; // our name -> name in the file
  let lmHead: string | undefined;
  for (const k of src.names) {
    if (k === "lm_head.weight" || k === "transformer.lm_head.weight") {
      lmHead = k; // GPT-2 ties the output head to wte: checked below
      continue;
    }
    if (/\.attn\.(masked_)?bias$/.test(k)) continue; // HF causal-mask buffers, not parameters
    const name = k.startsWith("transformer.") ? k.slice("transformer.".length) : k;
    if (fileName[name]) throw new Error(`${file}: tensor "${name}" appears twice (with and without the "transformer." prefix)`);
    fileName[name] = k;
  }
  const missing = Object.keys(expected).filter((n) => !fileName[n]);
  const extra = Object.keys(fileName).filter((n) => !expected[n]);
  if (missing.length) throw new Error(`${file}: missing tensor${missing.length > 1 ? "s" : ""} ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ` and ${missing.length - 5} more` : ""}`);
  if (extra.length) throw new Error(`${file}: unexpected tensor${extra.length > 1 ? "s" : ""} ${extra.slice(0, 5).join(", ")} (not part of a GPT-2 with this config.json)`);
  for (const [n, shape] of Object.entries(expected)) {
    const dtype = src.dtype(fileName[n]);
    if (dtype !== "F32") throw new Error(`${file}: tensor "${n}" has dtype ${dtype}, expected F32 (or F16/BF16, read as F32)`);
    const s = src.shape(fileName[n]);
    if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) throw new Error(`${file}: tensor "${n}" has shape [${s}], expected [${shape}] for this config.json`);
  }
  const params: Params = {};
  try {
    for (const n of Object.keys(expected)) {
      const t = src.read(fileName[n]);
      const bad = firstNonFinite(t.data);
      if (bad >= 0) throw new Error(`${file}: tensor "${n}" contains ${t.data[bad]} at index ${bad}: the weights are damaged (NaN or Inf)`);
      if (n === "wte.weight" && lmHead) {
        const head = src.read(lmHead);
        const same = head.shape.join("x") === t.shape.join("x") && head.data.every((x, i) => x === t.data[i]);
        if (!same) throw new Error(`${file}: lm_head.weight differs from wte.weight; this GPT-2 ties them (an untied head is not supported)`);
      }
      params[n] = tf.tensor(t.data, t.shape, "float32");
    }
  } catch (e) {
    disposeParams(params);
    throw e;
  }
  return params;
}

/** Turn raw safetensors entries into validated tensors for `config` (caller owns them). */
export function paramsFromRaw(raw: Record<string, RawTensor>, config: GPT2Config, file: string): Params {
  return paramsFromSource(inMemory(raw), config, file);
}

/** Read a model's weights from a safetensors file, one tensor at a time (caller owns them). */
export function readParams(file: string, config: GPT2Config): Params {
  const f = new SafetensorsFile(file);
  try {
    const src: TensorSource = { names: [...f.entries.keys()], shape: (n) => f.entries.get(n)!.shape, dtype: (n) => { const d = f.entries.get(n)!.dtype; return d === "F16" || d === "BF16" ? "F32" : d; }, read: (n) => f.read(n) };
    return paramsFromSource(src, config, file);
  } finally {
    f.close();
  }
}

/**
 * Load a model folder: ours, or a Hugging Face GPT-2 folder as downloaded from the Hub
 * (config.json, model.safetensors, and tokenizer.json or vocab.json + merges.txt). Throws a clear
 * error for a missing folder or file, or any mismatch.
 */
export function loadModel(dir: string): Model {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new Error(`model folder "${dir}" not found (expected config.json, model.safetensors and the tokenizer's files); run "mend pretrain" or pass --model`);
  }
  verifyFolder(dir);
  const config = validateConfig(readJson(path.join(dir, "config.json")) as GPT2Config);
  const tokenizer = loadTokenizer(dir);
  const exact = tokenizer.kind === "word"; // a Hub checkpoint may pad its embedding beyond the tokenizer
  if (exact ? tokenizer.size !== config.vocab_size : tokenizer.size > config.vocab_size) {
    throw new Error(`${dir}: the tokenizer has ${tokenizer.size} tokens but config.json says vocab_size ${config.vocab_size}`);
  }
  const file = path.join(dir, "model.safetensors");
  if (!fs.existsSync(file)) {
    const other = ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"].filter((n) => fs.existsSync(path.join(dir, n)));
    throw new Error(`${file}: file not found${other.length ? ` (the folder has ${other.join(", ")}; download model.safetensors, which every GPT-2 on the Hub has)` : ""}`);
  }
  const params = readParams(file, config);
  return new ParamsModel(config, params, tokenizer, { owned: Object.values(params) });
}

/** Tensors -> raw F32 entries (synchronous download). */
export function toRaw(params: Readonly<Params>): Record<string, RawTensor> {
  const raw: Record<string, RawTensor> = {};
  for (const [n, t] of Object.entries(params)) raw[n] = { dtype: "F32", shape: t.shape, data: t.dataSync() as Float32Array };
  return raw;
}

/** The files of a model folder (name -> bytes). */
export function modelFiles(m: ModelView, metadata: Record<string, string> = {}): Record<string, Buffer> {
  return {
    "model.safetensors": encodeSafetensors(toRaw(m.params), { format: "pt", ...metadata }),
    ...m.tokenizer.files(),
    "config.json": Buffer.from(JSON.stringify({ architectures: ["GPT2LMHeadModel"], ...m.config }, null, 2) + "\n"),
  };
}

/** Save a model folder as one unit (checkpointFolder.ts): the old folder or the new one, never a mix. */
export function saveModel(dir: string, m: ModelView, metadata: Record<string, string> = {}, opts: { check?: () => void } = {}): void {
  writeFolder(dir, "model", modelFiles(m, metadata), opts);
}
