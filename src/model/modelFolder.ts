/**
 * Model folders in the Hugging Face layout: `config.json` (GPT2Config keys), `model.safetensors`
 * (HF `GPT2Model` names, Conv1D layout [in, out]) and `vocab.json` (the word tokenizer).
 * Loading accepts the `transformer.` prefix that `GPT2LMHeadModel` files carry and ignores the
 * tied `lm_head.weight`. Everything is validated against the config with errors that name the
 * problem (shapes, non-finite weights, duplicate vocabulary entries); a folder is saved as one unit
 * with a manifest that loading checks (checkpointFolder.ts).
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { GPT2Config, validateConfig } from "./config";
import { Params, paramShapes } from "./gpt";
import { RawTensor, readSafetensors, encodeSafetensors } from "./safetensors";
import { verifyFolder, writeFolder } from "./checkpointFolder";
import { WordTokenizer } from "./tokenizer";

export interface Model {
  config: GPT2Config;
  params: Params;
  tokenizer: WordTokenizer;
}

export const MODEL_FILES = ["config.json", "model.safetensors", "vocab.json"] as const;

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

/** Turn raw safetensors entries into validated tensors for `config` (caller owns them). */
export function paramsFromRaw(raw: Record<string, RawTensor>, config: GPT2Config, file: string): Params {
  const expected = paramShapes(config);
  const byName: Record<string, RawTensor> = {};
  let lmHead: RawTensor | undefined;
  for (const [k, v] of Object.entries(raw)) {
    if (k === "lm_head.weight" || k === "transformer.lm_head.weight") {
      lmHead = v; // GPT-2 ties the output head to wte: checked below
      continue;
    }
    if (/\.attn\.(masked_)?bias$/.test(k)) continue; // HF causal-mask buffers, not parameters
    const name = k.startsWith("transformer.") ? k.slice("transformer.".length) : k;
    if (byName[name]) throw new Error(`${file}: tensor "${name}" appears twice (with and without the "transformer." prefix)`);
    byName[name] = v;
  }
  const missing = Object.keys(expected).filter((n) => !byName[n]);
  const extra = Object.keys(byName).filter((n) => !expected[n]);
  if (missing.length) throw new Error(`${file}: missing tensor${missing.length > 1 ? "s" : ""} ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ` and ${missing.length - 5} more` : ""}`);
  if (extra.length) throw new Error(`${file}: unexpected tensor${extra.length > 1 ? "s" : ""} ${extra.slice(0, 5).join(", ")} (not part of a GPT-2 with this config.json)`);
  for (const [n, shape] of Object.entries(expected)) {
    const t = byName[n];
    if (t.dtype !== "F32") throw new Error(`${file}: tensor "${n}" has dtype ${t.dtype}, expected F32`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${file}: tensor "${n}" has shape [${t.shape}], expected [${shape}] for this config.json`);
    }
    const bad = firstNonFinite(t.data);
    if (bad >= 0) throw new Error(`${file}: tensor "${n}" contains ${t.data[bad]} at index ${bad}: the weights are damaged (NaN or Inf)`);
  }
  if (lmHead) {
    const wte = byName["wte.weight"].data;
    const same = lmHead.shape.join("x") === byName["wte.weight"].shape.join("x") && lmHead.data.every((x, i) => x === wte[i]);
    if (!same) throw new Error(`${file}: lm_head.weight differs from wte.weight; this GPT-2 ties them (an untied head is not supported)`);
  }
  const params: Params = {};
  for (const n of Object.keys(expected)) params[n] = tf.tensor(byName[n].data, byName[n].shape, "float32");
  return params;
}

/** Load a model folder. Throws a clear error for a missing folder or file, or any mismatch. */
export function loadModel(dir: string): Model {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new Error(`model folder "${dir}" not found (expected ${MODEL_FILES.join(", ")}); run "mend pretrain" or pass --model`);
  }
  verifyFolder(dir);
  const config = validateConfig(readJson(path.join(dir, "config.json")) as GPT2Config);
  const vocabFile = path.join(dir, "vocab.json");
  let tokenizer: WordTokenizer;
  try {
    tokenizer = WordTokenizer.fromJSON(readJson(vocabFile), fs.readFileSync(vocabFile, "utf8"));
  } catch (e) {
    throw new Error(`${vocabFile}: ${(e as Error).message.replace(/^vocab\.json: /, "")}`);
  }
  if (tokenizer.size !== config.vocab_size) {
    throw new Error(`${dir}: vocab.json has ${tokenizer.size} tokens but config.json says vocab_size ${config.vocab_size}`);
  }
  const file = path.join(dir, "model.safetensors");
  const { tensors } = readSafetensors(file);
  return { config, params: paramsFromRaw(tensors, config, file), tokenizer };
}

/** Tensors -> raw F32 entries (synchronous download). */
export function toRaw(params: Readonly<Params>): Record<string, RawTensor> {
  const raw: Record<string, RawTensor> = {};
  for (const [n, t] of Object.entries(params)) raw[n] = { dtype: "F32", shape: t.shape, data: t.dataSync() as Float32Array };
  return raw;
}

/** The files of a model folder (name -> bytes). */
export function modelFiles(m: Model, metadata: Record<string, string> = {}): Record<string, Buffer> {
  return {
    "model.safetensors": encodeSafetensors(toRaw(m.params), { format: "pt", ...metadata }),
    "vocab.json": Buffer.from(JSON.stringify(m.tokenizer.toJSON()) + "\n"),
    "config.json": Buffer.from(JSON.stringify({ architectures: ["GPT2LMHeadModel"], ...m.config }, null, 2) + "\n"),
  };
}

/** Save a model folder as one unit (checkpointFolder.ts): the old folder or the new one, never a mix. */
export function saveModel(dir: string, m: Model, metadata: Record<string, string> = {}, opts: { check?: () => void } = {}): void {
  writeFolder(dir, "model", modelFiles(m, metadata), opts);
}
