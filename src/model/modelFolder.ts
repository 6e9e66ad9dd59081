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
import { RawTensor, SafetensorsFile, decodeSafetensors, encodeSafetensors } from "./safetensors";
import { isPlainFileName, recoverForRead, sha256, verifyFolder, writeFolder } from "./checkpointFolder";
import { Tokenizer } from "./tokenizer";
import { ModelView, ParamsModel } from "./paramsModel";
import { BpeTokenizer } from "./bpeTokenizer";
import { WordTokenizer } from "./wordTokenizer";
import { isJsonObject, parseJson, readJsonFile } from "./jsonFile";

/** A loaded model: it owns all its parameters (`dispose` frees them). */
export type Model = ParamsModel;

/**
 * The tokenizer of a model folder: `tokenizer.json` or `vocab.json` + `merges.txt` (GPT-2 BPE),
 * else `vocab.json` (the word tokenizer). Errors name the file.
 */
export function loadTokenizer(dir: string, has: (name: string) => boolean = (n) => fs.existsSync(path.join(dir, n))): Tokenizer {
  if (has("tokenizer.json") || has("merges.txt")) return BpeTokenizer.fromFolder(dir, has);
  const vocabFile = path.join(dir, "vocab.json");
  if (!has("vocab.json")) throw new Error(`${dir}: no tokenizer (expected tokenizer.json, vocab.json + merges.txt, or the word tokenizer's vocab.json)`);
  return wordTokenizer(fs.readFileSync(vocabFile, "utf8"), vocabFile);
}

/** The word tokenizer of a vocab.json's text; errors name `file`. */
function wordTokenizer(text: string, file: string): WordTokenizer {
  try {
    return WordTokenizer.fromJSON(parseJson(text, file), text);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message.replace(/^vocab\.json: /, "")}`);
  }
}


/** Index of the first NaN or ±Inf in `x`, or -1. */
function firstNonFinite(x: ArrayLike<number>): number {
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
  const fileName: Record<string, string> = Object.create(null); // our name -> name in the file (no prototype: a tensor may be named "constructor")
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
  const extra = Object.keys(fileName).filter((n) => !Object.prototype.hasOwnProperty.call(expected, n));
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

/** The tensors of safetensors files as one source: name -> the file that holds it (F16/BF16 read as F32). */
function filesSource(byName: ReadonlyMap<string, SafetensorsFile>): TensorSource {
  const entry = (n: string) => byName.get(n)!.entries.get(n)!;
  return {
    names: [...byName.keys()],
    shape: (n) => entry(n).shape,
    dtype: (n) => (entry(n).dtype === "F16" || entry(n).dtype === "BF16" ? "F32" : entry(n).dtype),
    read: (n) => byName.get(n)!.read(n),
  };
}

/**
 * A model from the bytes of a word-tokenizer model folder (config.json, vocab.json,
 * model.safetensors), as the browser lab fetches them (their sizes and SHA-256 checked against the
 * manifest by the caller). `where` names the folder in errors. The caller owns the model.
 */
export function modelFromFiles(files: Readonly<Record<string, Uint8Array>>, where: string): Model {
  const text = (name: string) => {
    if (!files[name]) throw new Error(`${where}/${name}: file not found`);
    return new TextDecoder().decode(files[name]);
  };
  const config = validateConfig(parseJson(text("config.json"), `${where}/config.json`) as GPT2Config);
  const tokenizer = wordTokenizer(text("vocab.json"), `${where}/vocab.json`);
  checkVocabulary(tokenizer, config, where);
  if (!files["model.safetensors"]) throw new Error(`${where}/model.safetensors: file not found`);
  const params = paramsFromRaw(decodeSafetensors(files["model.safetensors"], `${where}/model.safetensors`).tensors, config, `${where}/model.safetensors`);
  return new ParamsModel(config, params, tokenizer, { owned: Object.values(params) });
}

/** The tokenizer fits the config: exactly for the word tokenizer; a Hub checkpoint may pad its embedding beyond its BPE. */
function checkVocabulary(tokenizer: Tokenizer, config: GPT2Config, dir: string): void {
  const exact = tokenizer.kind === "word";
  if (exact ? tokenizer.size !== config.vocab_size : tokenizer.size > config.vocab_size) {
    throw new Error(`${dir}: the tokenizer has ${tokenizer.size} tokens but config.json says vocab_size ${config.vocab_size}`);
  }
}

/** Read a model's weights from a safetensors file, one tensor at a time (caller owns them). */
function readParams(file: string, config: GPT2Config): Params {
  const f = new SafetensorsFile(file);
  try {
    return paramsFromSource(filesSource(new Map([...f.entries.keys()].map((n) => [n, f]))), config, file);
  } finally {
    f.close();
  }
}

/** The name of the index of a sharded checkpoint, as the Hub writes it for larger models. */
const SHARD_INDEX = "model.safetensors.index.json";

/** The files that decide what a model folder loads (weights, config, tokenizer). */
const MODEL_FOLDER_FILES = ["config.json", "model.safetensors", SHARD_INDEX, "tokenizer.json", "vocab.json", "merges.txt"];

/**
 * Read a sharded checkpoint (`model.safetensors.index.json` with `weight_map`: tensor -> shard file
 * in the same folder), one tensor at a time. Every shard must be a plain file name of the folder and
 * hold the tensors the index gives it.
 */
function readShardedParams(dir: string, config: GPT2Config, listed: ReadonlySet<string> | null): Params {
  const index = path.join(dir, SHARD_INDEX);
  const json = readJsonFile(index) as { weight_map?: unknown };
  const map = json?.weight_map;
  if (!map || typeof map !== "object" || Array.isArray(map)) throw new Error(`${index}: no "weight_map" object (tensor name -> shard file)`);
  const shards = new Map<string, SafetensorsFile>();
  const byName = new Map<string, SafetensorsFile>();
  try {
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== "string" || !isPlainFileName(shard)) throw new Error(`${index}: tensor "${name}" is mapped to ${JSON.stringify(shard)}, not a file name of this folder`);
      if (listed && !listed.has(shard)) throw new Error(`${index}: shard "${shard}" is not in the folder's manifest`);
      if (!shards.has(shard)) shards.set(shard, new SafetensorsFile(path.join(dir, shard)));
      const f = shards.get(shard)!;
      if (!f.entries.has(name)) throw new Error(`${path.join(dir, shard)}: no tensor "${name}" (the index maps it there)`);
      byName.set(name, f);
    }
    return paramsFromSource(filesSource(byName), config, `${dir} (${shards.size} shards)`);
  } finally {
    for (const f of shards.values()) f.close();
  }
}

/**
 * Load a model folder: ours, or a Hugging Face GPT-2 folder as downloaded from the Hub
 * (config.json, model.safetensors, and tokenizer.json or vocab.json + merges.txt). Throws a clear
 * error for a missing folder or file, or any mismatch.
 */
export function loadModel(dir: string): Model {
  recoverForRead(dir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new Error(`model folder "${dir}" not found (expected config.json, model.safetensors and the tokenizer's files); run "mend pretrain" or pass --model`);
  }
  // A folder with a manifest holds exactly the files it lists: others are refused by name if they
  // would change what loads (a stray tokenizer.json), ignored otherwise.
  const manifest = verifyFolder(dir, ["model", "pretrain-run"]);
  const listed = manifest ? new Set(Object.keys(manifest.files)) : null;
  if (listed) {
    const stray = MODEL_FOLDER_FILES.filter((n) => !listed.has(n) && fs.existsSync(path.join(dir, n)));
    if (stray.length) throw new Error(`${dir}: ${stray.join(", ")} ${stray.length > 1 ? "are" : "is"} in the folder but not in its manifest.json, so ${stray.length > 1 ? "they are" : "it is"} not part of the model; remove ${stray.length > 1 ? "them" : "it"}, or save the folder again`);
  }
  const has = (n: string) => (listed ? listed.has(n) : fs.existsSync(path.join(dir, n)));
  if (!has("config.json")) throw new Error(`${path.join(dir, "config.json")}: file not found`);
  const config = validateConfig(readJsonFile(path.join(dir, "config.json")) as GPT2Config);
  const tokenizer = loadTokenizer(dir, has);
  checkVocabulary(tokenizer, config, dir);
  const file = path.join(dir, "model.safetensors");
  if (!has("model.safetensors") && !has(SHARD_INDEX)) {
    const other = ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"].filter((n) => fs.existsSync(path.join(dir, n)));
    throw new Error(`${file}: file not found${other.length ? ` (the folder has ${other.join(", ")}; download model.safetensors, which every GPT-2 on the Hub has)` : ""}`);
  }
  if (has("model.safetensors")) checkCompanions(dir, modelMetadata(dir));
  const params = has("model.safetensors") ? readParams(file, config) : readShardedParams(dir, config, listed);
  return new ParamsModel(config, params, tokenizer, { owned: Object.values(params) });
}

/** The metadata of a model folder's model.safetensors (e.g. `edits`: the edit requests it holds); {} without one. */
export function modelMetadata(dir: string): Record<string, string> {
  const file = path.join(dir, "model.safetensors");
  if (!fs.existsSync(file)) return {};
  const f = new SafetensorsFile(file);
  try {
    return { ...f.metadata };
  } finally {
    f.close();
  }
}

/** Tensors -> raw F32 entries (synchronous download). */
export function toRaw(params: Readonly<Params>): Record<string, RawTensor> {
  const raw: Record<string, RawTensor> = {};
  for (const [n, t] of Object.entries(params)) raw[n] = { dtype: "F32", shape: t.shape, data: t.dataSync() as Float32Array };
  return raw;
}

/**
 * The metadata key of model.safetensors under which our writer records the SHA-256 of the files the
 * weights are read with (config.json, the tokenizer's): a folder without its manifest whose config
 * or vocabulary was changed would otherwise load and compute another model without a word.
 */
const COMPANIONS_KEY = "mend_files_sha256";

/** The files of a model folder (name -> bytes). */
export function modelFiles(m: ModelView, metadata: Record<string, string> = {}): Record<string, Buffer> {
  const companions: Record<string, Buffer> = { ...m.tokenizer.files(), "config.json": Buffer.from(JSON.stringify({ architectures: ["GPT2LMHeadModel"], ...m.config }, null, 2) + "\n") };
  const sums = Object.fromEntries(Object.entries(companions).map(([n, b]) => [n, sha256(b)]));
  return { "model.safetensors": encodeSafetensors(toRaw(m.params), { format: "pt", ...metadata, [COMPANIONS_KEY]: JSON.stringify(sums) }), ...companions };
}

/** The files model.safetensors was saved with (its COMPANIONS_KEY record, if any) must be the folder's. */
function checkCompanions(dir: string, metadata: Readonly<Record<string, string>>): void {
  const raw = metadata[COMPANIONS_KEY];
  if (raw === undefined) return; // written by another tool (a Hub folder): nothing recorded
  const sums = parseJson(raw, `${dir}/model.safetensors (metadata "${COMPANIONS_KEY}")`);
  if (!isJsonObject(sums)) throw new Error(`${dir}/model.safetensors: metadata "${COMPANIONS_KEY}" must be an object of file -> SHA-256`);
  for (const [name, want] of Object.entries(sums)) {
    const file = path.join(dir, name);
    if (!isPlainFileName(name) || typeof want !== "string") throw new Error(`${dir}/model.safetensors: metadata "${COMPANIONS_KEY}" names ${JSON.stringify(name)}, not a file of the folder`);
    if (!fs.existsSync(file)) throw new Error(`${file}: file not found (model.safetensors was saved with it)`);
    const got = sha256(fs.readFileSync(file));
    if (got !== want) throw new Error(`${file}: not the ${name} model.safetensors was saved with (SHA-256 ${want.slice(0, 12)} recorded, ${got.slice(0, 12)} now), so the weights would be read with other settings or token ids; put the saved file back, or save the model again with this one`);
  }
}

/**
 * Save a model folder as one unit (checkpointFolder.ts): the old folder or the new one, never a mix.
 * `files` are written with it (an edit ledger: editLedger.ts).
 */
export function saveModel(dir: string, m: ModelView, metadata: Record<string, string> = {}, opts: { check?: () => void; files?: Readonly<Record<string, Buffer>> } = {}): void {
  writeFolder(dir, "model", { ...modelFiles(m, metadata), ...opts.files }, opts);
}
