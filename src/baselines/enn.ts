/**
 * ENN, Editable Neural Networks (Sinitsin et al. 2020), as the official MEND code runs it
 * (`algs/enn.py`, `config/alg/enn.yaml`):
 *
 *  - the edit is one SGD step on the edited weights, W' = W − λ_ℓ ∇_W L_edit(W), with one learned
 *    step size λ_ℓ per edited weight (initialised at `edit_lr` 1e-2, trained by their own Adam at
 *    `lr_lr` 1e-3);
 *  - meta-training also trains the base model itself (`train_base: True`): MEND's loss on the edited
 *    model plus c_base · KL(original ‖ current) on the locality text, against a frozen copy of the
 *    original (c_base 1.0), so the model learns to be editable;
 *  - so an ENN checkpoint holds its own copy of the base model: editing with ENN replaces the user's
 *    model by that copy, plus the step. The shipped base model is never changed.
 *
 * Deviation (docs/deviations.md): the official step is second-order in training (gradients flow
 * through ∇_W L_edit into the base weights); tfjs' second derivatives are wrong or missing for ops
 * GPT-2 needs (log-softmax, softmax, tanh, GELU, max: experiments/second-order), so ENN here is
 * first-order (the official `enn.first_order: True`): ∇_W L_edit is a constant of the outer step.
 * The step then has MEND's low-rank form, ΔW = −λ Σ_i u_i δ_iᵀ: rows k_i = −λ u_i, v_i = δ_i.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, makeBatch } from "../model/batch";
import { GPT2Config } from "../model/config";
import { gptForward, Params, paramsFingerprint } from "../model/gpt";
import { tokenKl } from "../model/loss";
import type { MethodState } from "../model/languageModel";
import type { ModelView } from "../model/paramsModel";
import { DenseDelta, ModelUpdate } from "../model/weightUpdate";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { lastBlocksMlp } from "../mend/editor";
import type { EditorKind, RowUpdate } from "../mend/editorKind";
import { captureFactors, disposeFactors, Factors } from "../mend/factor";
import { readFolderFiles, verifyFolder, writeFolder } from "../model/checkpointFolder";
import { checkedFields, field, inFile, parseJson } from "../model/jsonFile";
import { assignVariables, variablesSafetensors } from "./variableFiles";

export interface EnnConfig {
  /** Edited weights (official: MEND's, the last 3 blocks' MLP weights). */
  innerParams: string[];
  /** Initial step size λ of every edited weight (official 1e-2). */
  editLr: number;
  /** Weight of KL(original ‖ current) on the locality text (official 1.0). */
  cBase: number;
}

export const DEFAULT_ENN_CONFIG: Readonly<Omit<EnnConfig, "innerParams">> = Object.freeze({ editLr: 1e-2, cBase: 1.0 });

export interface EnnEditor {
  config: EnnConfig;
  /** The trained copy of the base model: every parameter, as variables. */
  params: Record<string, tf.Variable>;
  /** λ per edited weight (scalar variables). */
  lrs: Record<string, tf.Variable>;
  /** The fingerprint of the base model the copy started from (the model ENN edits in place of). */
  baseFingerprint: string;
}

let counter = 0;

/** A fresh ENN for `model`: a copy of its parameters and the initial step sizes. The caller owns it (`disposeEnn`). */
export function createEnn(model: ModelView, config: EnnConfig): EnnEditor {
  validateEnnConfig(config, model);
  const id = `enn${counter++}`;
  const params = Object.fromEntries(Object.entries(model.params).map(([n, t]) => [n, tf.variable(t, true, `${id}/base.${n}`)]));
  const lrs = Object.fromEntries(config.innerParams.map((n) => [n, tf.variable(tf.scalar(config.editLr), true, `${id}/lr.${n}`)]));
  return { config, params, lrs, baseFingerprint: paramsFingerprint(model.params) };
}

export function validateEnnConfig(c: EnnConfig, model?: ModelView): void {
  if (!Array.isArray(c.innerParams) || c.innerParams.length === 0) throw new Error("ENN config: innerParams is empty");
  if (!(Number.isFinite(c.editLr) && c.editLr > 0)) throw new Error(`ENN config: editLr must be a positive number, got ${c.editLr}`);
  if (!(Number.isFinite(c.cBase) && c.cBase >= 0)) throw new Error(`ENN config: cBase must be a non-negative number, got ${c.cBase}`);
  if (model) for (const n of c.innerParams) if (model.params[n]?.rank !== 2) throw new Error(`ENN config: "${n}" is not a 2-D weight of the base model`);
}

export function disposeEnn(e: EnnEditor): void {
  tf.dispose([...Object.values(e.params), ...Object.values(e.lrs)]);
}

/** The learned step sizes λ per edited weight. */
export function ennStepSizes(e: EnnEditor): Record<string, number> {
  return Object.fromEntries(Object.entries(e.lrs).map(([n, v]) => [n, v.dataSync()[0]]));
}

/** u, δ of the edit batch on the ENN copy (constants: first-order). The caller owns them. */
function ennCapture(e: EnnEditor, config: GPT2Config, batch: Batch, calls?: readonly number[]): Factors {
  return captureFactors(e.params, config, batch, e.config.innerParams, calls);
}

/** The step −λ ∇W as low-rank rows: k_i = −λ u_i, v_i = δ_i. Differentiable in λ. */
function ennUpdates(e: EnnEditor, f: Factors): Record<string, RowUpdate> {
  return Object.fromEntries(
    e.config.innerParams.map((n) => [n, { left: tf.mul(tf.neg(e.lrs[n]), f.u[n]) as tf.Tensor2D, right: f.delta[n], requests: f.rows[n].map((r) => Math.floor(r / f.seqLen)) }]),
  );
}

/** c_base · KL(original ‖ current), the mean over the locality batch's positions (official `kl_loc_loss` with its mask). */
function baseLoss(e: EnnEditor, model: ModelView, loc: Batch): tf.Scalar {
  const original = tf.tidy(() => gptForward(model.params, model.config, loc.inputIds, { attentionMask: loc.attentionMask }).logits);
  const current = gptForward(e.params, model.config, loc.inputIds, { attentionMask: loc.attentionMask }).logits;
  const kl = tf.div(tf.sum(tf.mul(tokenKl(original, current), loc.attentionMask)), tf.sum(loc.attentionMask));
  original.dispose();
  return tf.mul(e.config.cBase, kl) as tf.Scalar;
}

export interface EnnEditResult {
  /** ΔW relative to the model that was edited, dense (owned by the result: `disposeUpdate`). */
  update: ModelUpdate;
  /** Marks the edited model as ENN's (a later ENN edit of it takes only the step). */
  state: MethodState;
  latencyMs: number;
}

/**
 * Edit `model` with ENN. From a model that is not yet ENN's (`prior` absent) the edited model is
 * ENN's trained copy plus one step on the request(s); from an ENN-edited model (`prior`: its state),
 * one more step on its own weights. Pure: the model is not changed.
 */
export function ennEdit(model: ModelView, e: EnnEditor, requests: readonly EditRequest[], prior?: MethodState): EnnEditResult {
  validateRequests(requests);
  const t0 = performance.now();
  const own = prior?.method === "ENN";
  const from: Readonly<Params> = own ? model.params : e.params; // the weights the step is taken on
  const batch = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  const f = captureFactors(from, model.config, batch, e.config.innerParams);
  try {
    const names = own ? e.config.innerParams : Object.keys(e.params);
    const deltas = tf.tidy(() =>
      names.map((n) => {
        let d: tf.Tensor = own ? tf.zerosLike(model.params[n]) : tf.sub(e.params[n], model.params[n]); // switch to the copy
        if (e.config.innerParams.includes(n)) d = tf.sub(d, tf.mul(e.lrs[n], tf.matMul(tf.transpose(f.u[n]), f.delta[n]))); // − λ Σ u δᵀ
        return d as tf.Tensor2D;
      }),
    );
    const update: Record<string, DenseDelta> = Object.fromEntries(names.map((n, i) => [n, { delta: deltas[i] }]));
    return { update, state: { method: "ENN", meta: { fingerprint: e.baseFingerprint }, tensors: {} }, latencyMs: performance.now() - t0 };
  } finally {
    disposeFactors(f);
    disposeBatch(batch);
  }
}

const FORMAT = "mend-ts-enn";

function ennFiles(e: EnnEditor, model: ModelView, training?: Record<string, unknown>): Record<string, Buffer> {
  const vars: Record<string, tf.Tensor> = { ...Object.fromEntries(Object.entries(e.params).map(([n, v]) => [`base.${n}`, v])), ...Object.fromEntries(Object.entries(e.lrs).map(([n, v]) => [`lr.${n}`, v])) };
  const config = { format: FORMAT, method: "ENN", enn: e.config, base: { n_embd: model.config.n_embd, n_layer: model.config.n_layer, vocab_size: model.config.vocab_size, fingerprint: e.baseFingerprint }, ...(training ? { training } : {}) };
  return { "config.json": Buffer.from(JSON.stringify(config, null, 1) + "\n"), "editor.safetensors": variablesSafetensors(vars, FORMAT) };
}

/** Save an ENN folder (its step sizes and its trained copy of the base model) as one unit. */
export function saveEnn(dir: string, e: EnnEditor, model: ModelView, training?: Record<string, unknown>): void {
  writeFolder(dir, "editor", ennFiles(e, model, training));
}

/** Load an ENN folder for the base model it was trained from (checked by fingerprint). The caller owns it. */
export function loadEnn(dir: string, model: ModelView): EnnEditor {
  verifyFolder(dir, ["editor", "editor-run"]);
  const files = readFolderFiles(dir);
  const file = `${dir}/config.json`;
  const raw = checkedFields<{ format: string; enn: EnnConfig; base: { fingerprint: string } }>(parseJson(files["config.json"]?.toString("utf8") ?? "", file), file, { format: field.string });
  if (raw.format !== FORMAT) throw new Error(`${dir}: not an ENN folder (config.json format ${JSON.stringify(raw.format)}, expected "${FORMAT}")`);
  checkedFields(raw.enn, file, { innerParams: field.strings, editLr: field.number, cBase: field.number }, "enn.");
  checkedFields(raw.base, file, { fingerprint: field.sha256 }, "base.");
  const have = paramsFingerprint(model.params);
  if (raw.base.fingerprint !== have) throw new Error(`${dir}: this ENN was trained from the base model with fingerprint ${raw.base.fingerprint.slice(0, 12)}, not this one (${have.slice(0, 12)})`);
  const e = inFile(file, () => createEnn(model, { ...raw.enn }));
  try {
    const vars = { ...Object.fromEntries(Object.entries(e.params).map(([n, v]) => [`base.${n}`, v])), ...Object.fromEntries(Object.entries(e.lrs).map(([n, v]) => [`lr.${n}`, v])) };
    assignVariables(vars, files["editor.safetensors"], `${dir}/editor.safetensors (the ENN ${file} describes)`);
    return e;
  } catch (err) {
    disposeEnn(e);
    throw err;
  }
}

/** ENN as an editor kind for the meta-training loop: the base copy trains at the main lr, λ at `editLrLr`. */
export const ennKind: EditorKind<EnnEditor> = {
  name: "ENN",
  create: (model, settings) => createEnn(model, { ...DEFAULT_ENN_CONFIG, innerParams: lastBlocksMlp(model.config.n_layer), ...(settings as Partial<EnnConfig>) }),
  variables: (e) => ({ net: {}, lrs: Object.fromEntries(Object.entries(e.lrs).map(([n, v]) => [`lr.${n}`, v])), base: Object.fromEntries(Object.entries(e.params).map(([n, v]) => [`base.${n}`, v])) }),
  capture: (e, model, batch, calls) => ennCapture(e, model.config, batch, calls),
  updates: (e, calls) => ennUpdates(e, calls.factors),
  params: (e) => e.params,
  extraLoss: (e, model, loc) => ({ base: baseLoss(e, model, loc) }),
  files: ennFiles,
  load: loadEnn,
  dispose: disposeEnn,
};
