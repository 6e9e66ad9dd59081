/**
 * KE, the Knowledge Editor (De Cao, Aziz, Titov 2021, "Editing Factual Knowledge in Language
 * Models"), as the official MEND code runs it (`algs/efk.py`, `config/alg/efk.yaml`):
 *
 *  - a conditioner reads the text "{old prediction} >> {new target} || {input}": an embedding
 *    initialised from the base model's token embeddings (trainable), a bidirectional one-layer LSTM
 *    (hidden 512) whose two final states go through a feed-forward layer to c (768, tanh);
 *  - per edited weight W [d_in, d_out], a small network (weight-normalised linear 768 -> 512, tanh,
 *    weight-normalised linear 512 -> 2(d_in + d_out) + 1) maps c to a rank-1 mask
 *    a = softmax(r_a)ᵀ c_a, a rank-1 offset b = softmax(r_b)ᵀ c_b (r [d_in], c [d_out]) and a scale η;
 *  - the update is ΔW = max_scale · sigmoid(η) · (∇W ⊙ a + b), added to W (max_scale 1), where ∇W is
 *    the gradient of the edit example's mean NLL (a constant: the editor is first-order, like MEND).
 *
 * As a value: ∇W = Σ_i u_i δ_iᵀ, so ∇W ⊙ (r cᵀ) = Σ_i (u_i ⊙ r)(δ_i ⊙ c)ᵀ, and the update is the
 * low-rank rows k_i = s (u_i ⊙ softmax(r_a)), v_i = δ_i ⊙ c_a plus one row (s softmax(r_b), c_b): rank
 * at most N_k + 1 for N_k token rows. One request per edit call (the official conditioner takes one
 * edit at a time). Meta-trained with MEND's loss through the same loop (train.ts) as an editor kind.
 *
 * Deviations (docs/deviations.md): the facts world's word vocabulary has no ">>" or "||", so the
 * three parts are joined by the end-of-text token there (GPT-2's BPE encodes " >> " and " || " as
 * the official text); the embedding's padding row is not held at a zero gradient (padded positions
 * never reach the LSTM's final states here: they are masked).
 * Shapes: B edit calls (batch rows), T condition tokens, C embedding width, H LSTM hidden.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, makeBatch } from "../model/batch";
import { gptForward, paramsFingerprint } from "../model/gpt";
import type { ModelView } from "../model/paramsModel";
import type { Tokenizer } from "../model/tokenizer";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { lastBlocksMlp } from "../mend/editor";
import type { EditCalls, EditorKind, RowUpdate } from "../mend/editorKind";
import { captureFactors, disposeFactors, Factors } from "../mend/factor";
import type { LowRankUpdate } from "../mend/hooks";
import { readFolderFiles, verifyFolder, writeFolder } from "../model/checkpointFolder";
import { checkedFields, field, inFile, parseJson } from "../model/jsonFile";
import { assignVariables, variablesSafetensors } from "./variableFiles";

export interface KeConfig {
  /** Edited weights (official: MEND's, the last 3 blocks' MLP weights). */
  innerParams: string[];
  /** LSTM hidden size and the per-weight networks' hidden size (official 512). */
  hidden: number;
  /** Width of the condition vector c (official 768). */
  condition: number;
  /** Upper bound of the update's scale (official EFK: 1). */
  maxScale: number;
}

export const DEFAULT_KE_CONFIG: Readonly<Omit<KeConfig, "innerParams">> = Object.freeze({ hidden: 512, condition: 768, maxScale: 1 });

/**
 * KE's sizes for a model of width `nEmbd`: the official 512 and 768 for models 768 wide (GPT-2,
 * BART-base), scaled with the width below that (the facts world's 128: 85 and 128), as MEND's rank
 * is rescaled for the toy model (docs/deviations.md).
 */
export function keSizesFor(nEmbd: number): Pick<KeConfig, "hidden" | "condition"> {
  const f = Math.min(1, nEmbd / 768);
  return { hidden: Math.round(DEFAULT_KE_CONFIG.hidden * f), condition: Math.round(DEFAULT_KE_CONFIG.condition * f) };
}

/** A weight-normalised linear layer (PyTorch `weight_norm(Linear)`, norm per output unit): y = x (g ⊙ v/‖v‖) + b. */
interface WnLinear {
  /** [in, out] */
  v: tf.Variable;
  /** [out] */
  g: tf.Variable;
  /** [out] */
  b: tf.Variable;
}

interface LstmDirection {
  /** [C + H, 4H]: the input and hidden weights stacked (gates i, f, g, o as PyTorch) */
  kernel: tf.Variable;
  /** [4H] b_ih and b_hh, kept apart as PyTorch initialises them */
  bIh: tf.Variable;
  bHh: tf.Variable;
}

export interface KeEditor {
  config: KeConfig;
  /** [V, C], initialised from the base model's wte */
  embedding: tf.Variable;
  forward: LstmDirection;
  backward: LstmDirection;
  /** [2H, condition] and [condition]: the feed-forward layer after the LSTM (tanh) */
  ffW: tf.Variable;
  ffB: tf.Variable;
  /** Per edited weight: condition -> hidden (tanh) -> 2(d_in + d_out) + 1 */
  weights: Record<string, { first: WnLinear; second: WnLinear; dIn: number; dOut: number }>;
}

let counter = 0;

function uniform(shape: number[], bound: number, seed: number): tf.Tensor {
  return tf.randomUniform(shape, -bound, bound, "float32", seed);
}

function variable(t: tf.Tensor, name: string): tf.Variable {
  const v = tf.variable(t, true, name);
  t.dispose();
  return v;
}

/** PyTorch Linear's default init (U(±1/√in) for weight and bias) under weight_norm: g = ‖v‖ per output. */
function wnLinear(inDim: number, outDim: number, seed: number, name: string): WnLinear {
  const bound = 1 / Math.sqrt(inDim);
  const v = uniform([inDim, outDim], bound, seed);
  const g = tf.tidy(() => tf.norm(v, "euclidean", 0));
  return { v: variable(v, `${name}.v`), g: variable(g, `${name}.g`), b: variable(uniform([outDim], bound, seed + 1), `${name}.b`) };
}

function wnApply(l: WnLinear, x: tf.Tensor2D): tf.Tensor2D {
  const w = tf.mul(l.v, tf.div(l.g, tf.norm(l.v, "euclidean", 0))); // [in, out]
  return tf.add(tf.matMul(x, w), l.b) as tf.Tensor2D;
}

function lstmDirection(inDim: number, hidden: number, seed: number, name: string): LstmDirection {
  const bound = 1 / Math.sqrt(hidden);
  return {
    kernel: variable(uniform([inDim + hidden, 4 * hidden], bound, seed), `${name}.kernel`),
    bIh: variable(uniform([4 * hidden], bound, seed + 1), `${name}.b_ih`),
    bHh: variable(uniform([4 * hidden], bound, seed + 2), `${name}.b_hh`),
  };
}

/** A fresh KE editor for `model` (seeded); the caller owns it (`disposeKe`). */
export function createKe(model: ModelView, config: KeConfig, seed: number): KeEditor {
  validateKeConfig(config, model);
  const id = `ke${counter++}`;
  const C = model.config.n_embd;
  const H = config.hidden;
  const s = seed * 1000 + 7;
  const weights: KeEditor["weights"] = {};
  config.innerParams.forEach((n, i) => {
    const [dIn, dOut] = model.params[n].shape;
    weights[n] = { dIn, dOut, first: wnLinear(config.condition, H, s + 20 + 4 * i, `${id}/${n}.first`), second: wnLinear(H, 2 * (dIn + dOut) + 1, s + 22 + 4 * i, `${id}/${n}.second`) };
  });
  return {
    config,
    embedding: variable(tf.clone(model.params["wte.weight"]), `${id}/embedding`),
    forward: lstmDirection(C, H, s + 1, `${id}/lstm.fwd`),
    backward: lstmDirection(C, H, s + 4, `${id}/lstm.bwd`),
    ffW: variable(uniform([2 * H, config.condition], 1 / Math.sqrt(2 * H), s + 8), `${id}/ff.w`),
    ffB: variable(uniform([config.condition], 1 / Math.sqrt(2 * H), s + 9), `${id}/ff.b`),
    weights,
  };
}

export function validateKeConfig(c: KeConfig, model?: ModelView): void {
  if (!Array.isArray(c.innerParams) || c.innerParams.length === 0) throw new Error("KE config: innerParams is empty");
  for (const k of ["hidden", "condition"] as const) if (!Number.isSafeInteger(c[k]) || c[k] < 1) throw new Error(`KE config: ${k} must be a positive integer, got ${c[k]}`);
  if (!(Number.isFinite(c.maxScale) && c.maxScale > 0)) throw new Error(`KE config: maxScale must be a positive number, got ${c.maxScale}`);
  if (model) for (const n of c.innerParams) if (model.params[n]?.rank !== 2) throw new Error(`KE config: "${n}" is not a 2-D weight of the base model`);
}

/** Every variable with its checkpoint name, in a fixed order. */
export function keVariables(e: KeEditor): Record<string, tf.Variable> {
  const out: Record<string, tf.Variable> = { embedding: e.embedding, "ff.w": e.ffW, "ff.b": e.ffB };
  for (const [d, l] of [["fwd", e.forward], ["bwd", e.backward]] as const) Object.assign(out, { [`lstm.${d}.kernel`]: l.kernel, [`lstm.${d}.b_ih`]: l.bIh, [`lstm.${d}.b_hh`]: l.bHh });
  for (const [n, w] of Object.entries(e.weights)) for (const [p, l] of [["first", w.first], ["second", w.second]] as const) Object.assign(out, { [`${n}.${p}.v`]: l.v, [`${n}.${p}.g`]: l.g, [`${n}.${p}.b`]: l.b });
  return out;
}

export function disposeKe(e: KeEditor): void {
  tf.dispose(Object.values(keVariables(e)));
}

/** The separator ids between the parts of the condition: " >> " and " || " where the tokenizer has them, else end-of-text. */
function separators(tok: Tokenizer): [number[], number[]] {
  const enc = (s: string) => {
    try {
      const ids = tok.encode(s);
      return ids.length ? ids : [tok.eosId];
    } catch {
      return [tok.eosId];
    }
  };
  return [enc(" >> "), enc(" || ")];
}

/**
 * The condition of every batch row, as ids: the base model's (teacher-forced) prediction at the
 * target positions, ">>", the target, "||", the prompt. Reads the base logits once.
 */
function conditionIds(model: ModelView, batch: Batch): number[][] {
  const ids = batch.inputIds.arraySync() as number[][];
  const labels = batch.labels.arraySync() as number[][];
  const argmax = tf.tidy(() => tf.argMax(gptForward(model.params, model.config, batch.inputIds, { attentionMask: batch.attentionMask }).logits, -1).arraySync() as number[][]);
  const [s1, s2] = separators(model.tokenizer);
  const bos = model.tokenizer.bosId;
  return ids.map((row, b) => {
    const pos = labels[b].flatMap((l, t) => (l >= 0 ? [t] : []));
    const prompt = row.slice(bos === null ? 0 : 1, pos[0] + 1);
    return [...pos.map((t) => argmax[b][t]), ...s1, ...pos.map((t) => labels[b][t]), ...s2, ...prompt];
  });
}

/** Factors of an edit batch -> the condition ids that go with them (set by `keCapture`). */
const conditions = new WeakMap<Factors, number[][]>();

/** u, δ of the edit batch (constants) and the condition of each request. The caller owns the factors. */
function keCapture(e: KeEditor, model: ModelView, batch: Batch, calls?: readonly number[]): Factors {
  const f = captureFactors(model.params, model.config, batch, e.config.innerParams, calls);
  conditions.set(f, conditionIds(model, batch));
  return f;
}

/** One LSTM direction over [B, T, C] with a [B, T] mask (a masked step keeps the state). @returns h [B, H] */
function runLstm(d: LstmDirection, x: tf.Tensor3D, mask: tf.Tensor2D, H: number, reverse: boolean): tf.Tensor2D {
  const [B, T] = x.shape;
  let h = tf.zeros([B, H]) as tf.Tensor2D;
  let c = tf.zeros([B, H]) as tf.Tensor2D;
  const bias = tf.add(d.bIh, d.bHh);
  for (let k = 0; k < T; k++) {
    const t = reverse ? T - 1 - k : k;
    const xt = tf.reshape(tf.slice(x, [0, t, 0], [B, 1, -1]), [B, -1]) as tf.Tensor2D;
    const z = tf.add(tf.matMul(tf.concat([xt, h], 1), d.kernel), bias); // [B, 4H]
    const [i, f, g, o] = tf.split(z, 4, 1);
    const cNew = tf.add(tf.mul(tf.sigmoid(f), c), tf.mul(tf.sigmoid(i), tf.tanh(g))) as tf.Tensor2D;
    const hNew = tf.mul(tf.sigmoid(o), tf.tanh(cNew)) as tf.Tensor2D;
    const m = tf.slice(mask, [0, t], [B, 1]); // [B, 1]
    c = tf.add(tf.mul(m, cNew), tf.mul(tf.sub(1, m), c)) as tf.Tensor2D;
    h = tf.add(tf.mul(m, hNew), tf.mul(tf.sub(1, m), h)) as tf.Tensor2D;
  }
  return h;
}

/** c for each condition: LSTM both ways, final states, tanh feed-forward. @returns [B, condition] */
export function keCondition(e: KeEditor, ids: readonly (readonly number[])[]): tf.Tensor2D {
  const T = Math.max(...ids.map((r) => r.length));
  const B = ids.length;
  const V = e.embedding.shape[0];
  const flat = ids.flatMap((r) => [...r, ...new Array<number>(T - r.length).fill(0)]);
  const mask = tf.tensor2d(ids.flatMap((r) => [...new Array<number>(r.length).fill(1), ...new Array<number>(T - r.length).fill(0)]), [B, T]);
  const onehot = tf.oneHot(tf.tensor1d(flat, "int32"), V).toFloat() as tf.Tensor2D; // [B·T, V] (gather's gradient is missing on wasm)
  const x = tf.reshape(tf.matMul(onehot, e.embedding), [B, T, -1]) as tf.Tensor3D;
  const H = e.config.hidden;
  const h = tf.concat([runLstm(e.forward, x, mask, H, false), runLstm(e.backward, x, mask, H, true)], 1) as tf.Tensor2D; // [B, 2H]
  return tf.tanh(tf.add(tf.matMul(h, e.ffW), e.ffB)) as tf.Tensor2D;
}

/**
 * The dense form of KE's update for one condition c [1, condition] and one weight: the mask
 * a = softmax(r_a)ᵀ c_a, the offset b = softmax(r_b)ᵀ c_b [d_in, d_out] and the scale s, so that
 * ΔW = s (∇W ⊙ a + b). For checks and figures; editing uses the low-rank form (`keUpdates`).
 */
export function keMaskAndOffset(e: KeEditor, name: string, c: tf.Tensor2D): { a: tf.Tensor2D; b: tf.Tensor2D; scale: number } {
  const w = e.weights[name];
  if (!w) throw new Error(`KE does not edit "${name}" (it edits ${e.config.innerParams.join(", ")})`);
  const [a, b, s] = tf.tidy(() => {
    const raw = wnApply(w.second, tf.tanh(wnApply(w.first, c)) as tf.Tensor2D);
    const [colA, rowA, colB, rowB, eta] = tf.split(raw, [w.dOut, w.dIn, w.dOut, w.dIn, 1], 1) as tf.Tensor2D[];
    return [tf.matMul(tf.transpose(tf.softmax(rowA)), colA), tf.matMul(tf.transpose(tf.softmax(rowB)), colB), tf.mul(e.config.maxScale, tf.sigmoid(eta))] as tf.Tensor2D[];
  });
  const scale = s.dataSync()[0];
  s.dispose();
  return { a, b, scale };
}

/**
 * KE's update of every edited weight as low-rank rows (one request per batch row / call), from the
 * factors `keCapture` returned: differentiable in the editor's variables.
 */
function keUpdates(e: KeEditor, factors: Factors): Record<string, RowUpdate> {
  const ids = conditions.get(factors);
  if (!ids) throw new Error("KE: these factors were not captured by KE (no condition)");
  const B = ids.length;
  const c = keCondition(e, ids); // [B, condition]
  const out: Record<string, RowUpdate> = {};
  for (const n of e.config.innerParams) {
    const w = e.weights[n];
    const raw = wnApply(w.second, tf.tanh(wnApply(w.first, c)) as tf.Tensor2D); // [B, 2(d_in + d_out) + 1]
    const [colA, rowA, colB, rowB, eta] = tf.split(raw, [w.dOut, w.dIn, w.dOut, w.dIn, 1], 1) as tf.Tensor2D[];
    const scale = tf.mul(e.config.maxScale, tf.sigmoid(eta)) as tf.Tensor2D; // [B, 1]
    const ra = tf.softmax(rowA); // [B, d_in]
    const rb = tf.softmax(rowB);
    const requests = factors.rows[n].map((r) => Math.floor(r / factors.seqLen));
    const select = tf.tensor2d(requests.flatMap((q) => Array.from({ length: B }, (_, b) => (b === q ? 1 : 0))), [requests.length, B]); // [M, B] (tf.oneHot needs a depth of 2 or more)
    const keys = tf.mul(tf.mul(factors.u[n], tf.matMul(select, ra)), tf.matMul(select, scale)) as tf.Tensor2D; // s (u ⊙ softmax(r_a))
    const values = tf.mul(factors.delta[n], tf.matMul(select, colA)) as tf.Tensor2D; // δ ⊙ c_a
    out[n] = {
      left: tf.concat([keys, tf.mul(rb, scale)], 0) as tf.Tensor2D, // + the offset row s softmax(r_b)
      right: tf.concat([values, colB], 0) as tf.Tensor2D,
      requests: [...requests, ...Array.from({ length: B }, (_, b) => b)],
    };
  }
  return out;
}

/**
 * KE's update of one weight for one request, in its dense parts (for notebooks and checks): the
 * condition text, ∇W of the edit's mean NLL [d_in, d_out], the mask a, the offset b and the scale s,
 * so that ΔW = s (∇W ⊙ a + b). The caller owns the tensors.
 */
export function keDenseParts(model: ModelView, e: KeEditor, request: EditRequest, name: string): { condition: string; grad: tf.Tensor2D; a: tf.Tensor2D; b: tf.Tensor2D; scale: number } {
  validateRequests([request]);
  if (!e.weights[name]) throw new Error(`KE does not edit "${name}" (it edits ${e.config.innerParams.join(", ")})`);
  const batch = makeBatch(model.tokenizer, [request], "target", model.config.n_positions);
  const factors = keCapture(e, model, batch);
  try {
    const ids = conditions.get(factors)!;
    const grad = tf.tidy(() => tf.matMul(tf.transpose(factors.u[name]), factors.delta[name]) as tf.Tensor2D); // Σ_i u_i δ_iᵀ, explicit transpose: wasm's fast path
    const c = keCondition(e, ids);
    const parts = keMaskAndOffset(e, name, c);
    c.dispose();
    return { condition: model.tokenizer.decode(ids[0]), grad, ...parts };
  } finally {
    disposeFactors(factors);
    disposeBatch(batch);
  }
}

/** What an edit by KE returns: its update as a value (one request). */
export interface KeEditResult {
  /** Owned by the result: `disposeUpdate` (model/weightUpdate.ts). */
  update: LowRankUpdate;
  latencyMs: number;
}

/** Edit `model` with one request: ΔW as low-rank rows (α = 1). Pure: the model is not changed. */
export function keEdit(model: ModelView, e: KeEditor, requests: readonly EditRequest[]): KeEditResult {
  validateRequests(requests);
  if (requests.length !== 1) throw new Error(`KE edits one request at a time (its conditioner reads one edit), got ${requests.length}`);
  const t0 = performance.now();
  const batch = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  const factors = keCapture(e, model, batch);
  try {
    const update = tf.tidy(() => {
      const rows = keUpdates(e, factors);
      return Object.fromEntries(Object.entries(rows).map(([n, r]) => [n, { alpha: 1, keys: r.left, values: r.right, requests: r.requests.map(() => 0) }]));
    }) as unknown as LowRankUpdate;
    return { update, latencyMs: performance.now() - t0 };
  } finally {
    disposeFactors(factors);
    disposeBatch(batch);
  }
}

const FORMAT = "mend-ts-ke";

/** The files of a KE editor folder (kind "editor"): config.json and editor.safetensors. */
function keFiles(e: KeEditor, model: ModelView, training?: Record<string, unknown>): Record<string, Buffer> {
  const config = { format: FORMAT, method: "KE", ke: e.config, base: { n_embd: model.config.n_embd, n_layer: model.config.n_layer, vocab_size: model.config.vocab_size, fingerprint: paramsFingerprint(model.params) }, ...(training ? { training } : {}) };
  return { "config.json": Buffer.from(JSON.stringify(config, null, 1) + "\n"), "editor.safetensors": variablesSafetensors(keVariables(e), FORMAT) };
}

/** Save a KE editor folder as one unit. */
export function saveKe(dir: string, e: KeEditor, model: ModelView, training?: Record<string, unknown>): void {
  writeFolder(dir, "editor", keFiles(e, model, training));
}

/** Load a KE editor folder for `model` (checked: format, base model, every variable's shape). The caller owns it. */
export function loadKe(dir: string, model: ModelView): KeEditor {
  verifyFolder(dir, ["editor", "editor-run"]);
  const files = readFolderFiles(dir);
  const file = `${dir}/config.json`;
  const raw = checkedFields<{ format: string; ke: KeConfig; base: { fingerprint?: string; n_embd: number; vocab_size: number } }>(parseJson(files["config.json"]?.toString("utf8") ?? "", file), file, { format: field.string });
  if (raw.format !== FORMAT) throw new Error(`${dir}: not a KE editor folder (config.json format ${JSON.stringify(raw.format)}, expected "${FORMAT}")`);
  checkedFields(raw.ke, file, { innerParams: field.strings, hidden: field.size, condition: field.size, maxScale: field.positive }, "ke.");
  checkedFields(raw.base, file, { fingerprint: field.optional(field.sha256), n_embd: field.size, vocab_size: field.size }, "base.");
  if (raw.base.n_embd !== model.config.n_embd || raw.base.vocab_size !== model.config.vocab_size) throw new Error(`${dir}: this KE editor was trained for another base model (n_embd ${raw.base.n_embd}, vocab ${raw.base.vocab_size})`);
  if (raw.base.fingerprint && raw.base.fingerprint !== paramsFingerprint(model.params)) throw new Error(`${dir}: this KE editor was trained for the base model with fingerprint ${raw.base.fingerprint.slice(0, 12)}, not this one`);
  const e = inFile(file, () => createKe(model, { ...raw.ke }, 0));
  try {
    assignVariables(keVariables(e), files["editor.safetensors"], `${dir}/editor.safetensors (the nets of the KE editor ${file} describes)`);
    return e;
  } catch (err) {
    disposeKe(e);
    throw err;
  }
}

/** KE as an editor kind for the meta-training loop (train.ts): its variables train at the main lr. */
export const keKind: EditorKind<KeEditor> = {
  name: "KE",
  create: (model, settings, seed) => createKe(model, { ...DEFAULT_KE_CONFIG, ...keSizesFor(model.config.n_embd), innerParams: lastBlocksMlp(model.config.n_layer), ...(settings as Partial<KeConfig>) }, seed),
  variables: (e) => ({ net: keVariables(e), lrs: {} }),
  capture: (e, model, batch, calls) => keCapture(e, model, batch, calls),
  updates: (e: KeEditor, calls: EditCalls) => keUpdates(e, calls.factors),
  files: keFiles,
  load: loadKe,
  dispose: disposeKe,
};
