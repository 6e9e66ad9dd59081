/**
 * Edit-time preservation of same-answer knowledge: our deviation from the official MEND code (opt-in;
 * `preservedEdit`, method MEND-batch-pres of `mend eval --methods`; not shipped).
 *
 * The edits MEND breaks most are of prompts whose answer is the edited fact's *old* answer ("In
 * Ireland, people speak English" after the United States' English is edited to Slovak): at the
 * answer position the edited layers' input already encodes the answer about to be given, so an update
 * keyed on the edit prompt's input reaches every prompt about to give that answer (docs/research-log.md).
 * MEMIT and AlphaEdit keep such knowledge by constraining the update on the keys of known facts.
 * Here the constraint is applied to MEND's own update, with no training:
 *
 *   1. a preservation set: prompts the model already answers (here: the world's training-split facts,
 *      never edited in evaluation), with the edited layers' inputs at the answer position and the
 *      model's own answer (argmax), measured once on the base model;
 *   2. at edit time, the base model's answer on each edit prompt (its old answer) selects the
 *      preserved inputs V_p that give the same answer;
 *   3. every key row κ of the update (ũ, or the preconditioned key) is corrected within the span of
 *      the call's own target inputs V_e and V_p so that its responses on V_p vanish (up to a ridge
 *      1/β) and those on V_e stay (keyPrecond.ts `decorrelatedKeys`, V_p entering as inputs of "other
 *      requests" that ask for no change).
 *
 * The step calibration (calibrate.ts) then finds the step the corrected update needs. Uses only the
 * edit example and the model's answers on a fixed set of prompts, no labels of the evaluated facts.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeBatch, encodeExamples, toBatch } from "../model/batch";
import { gptForward } from "../model/gpt";
import { ModelView } from "../model/paramsModel";
import { disposeEdit, EditResult, mendEdit } from "../mend/edit";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { Editor } from "../mend/editor";
import { calibration, StepCalibration } from "./calibrate";
import { lastPositionInputs } from "../model/layerInputs";
import { extensionsOf, withKeys } from "./editorExtensions";
import { preconditionedKeys } from "./keyPrecond";

export interface PreservationSet {
  prompts: string[];
  /** The base model's answer (argmax next token) after each prompt, [n]. */
  answers: Int32Array;
  /** name -> the weight's input at each prompt's last position, [n, d_in]. Owned by the set. */
  inputs: Record<string, tf.Tensor2D>;
}

/** How an edit uses a preservation set (needs step calibration, which is also the fallback's). */
export interface Preservation {
  set: PreservationSet;
  /** Constraint strength: ridge 1/β on unit-normalised inputs (> 0; larger = closer to exact). */
  beta: number;
  /** Calibration margin of the preserved update (its steps are searched up to maxStep / margin). */
  margin: number;
  /**
   * The preserved update is applied only when every request's step margin·s* is at most this;
   * otherwise the call gets the plain calibrated edit. A large step means the constraint removed
   * what the edit needs, and what is left is keyed on the subject: it breaks the subject's other
   * facts (validation edits, README).
   */
  maxStep: number;
}

/**
 * Tuned for checkpoints/editor-batch on the validation edits (README): β 10, margin 1.6, steps up
 * to 1.2 α∇̃W, falling back to the plain edit at its own margin (BATCH_EDITOR_CALIBRATION).
 */
export const BATCH_EDITOR_PRESERVATION: Readonly<Omit<Preservation, "set">> = Object.freeze({ beta: 10, margin: 1.6, maxStep: 1.2 });

/** Measure a preservation set on the base model: the inputs of `names` and the answer after each prompt. */
export function buildPreservationSet(model: ModelView, names: readonly string[], prompts: readonly string[]): PreservationSet {
  const { inputs, answers } = lastPositionInputs(model, names, prompts);
  return { prompts: [...prompts], answers, inputs };
}

export function disposePreservationSet(p: PreservationSet): void {
  tf.dispose(Object.values(p.inputs));
}

/** Indices of the preserved prompts whose answer is one of `answers`. */
export function preservedRows(set: PreservationSet, answers: readonly number[]): number[] {
  const want = new Set(answers);
  const out: number[] = [];
  set.answers.forEach((a, i) => want.has(a) && out.push(i));
  return out;
}

/** The set's inputs at `rows`, per name [rows.length, d_in]. The caller owns them. */
export function preservedInputsAt(set: PreservationSet, rows: readonly number[], names: readonly string[]): Record<string, tf.Tensor2D> {
  return tf.tidy(() => {
    const idx = tf.tensor1d(rows as number[], "int32");
    return Object.fromEntries(names.map((n) => [n, tf.gather(set.inputs[n], idx) as tf.Tensor2D]));
  });
}

/**
 * The base model's answer (argmax) at the position that predicts each batch row's first target
 * token: the edit's old answer. @param logits [B, T, V] @param labels [B, T] rows as plain arrays
 */
export function firstTargetArgmax(logits: tf.Tensor3D, labels: readonly (readonly number[])[]): number[] {
  const [B, T, V] = logits.shape;
  const pos = labels.map((row) => row.findIndex((l) => l >= 0));
  if (pos.some((p) => p < 0)) throw new Error("firstTargetArgmax: a row has no target token");
  return tf.tidy(() => Array.from(tf.argMax(tf.gather(tf.reshape(logits, [B * T, V]), tf.tensor1d(pos.map((p, b) => b * T + p), "int32")), 1).dataSync()));
}

function validatePreservation(p: Preservation, names: readonly string[]): void {
  if (!(p.beta > 0) || !Number.isFinite(p.beta)) throw new Error(`preservation: β must be a finite number > 0, got ${p.beta}`);
  if (!(p.margin > 0) || !(p.maxStep > 0) || !Number.isFinite(p.maxStep)) throw new Error(`preservation: margin and maxStep must be > 0, got ${p.margin} and ${p.maxStep}`);
  for (const n of names) {
    const x = p.set.inputs[n];
    if (!x) throw new Error(`preservation: the set has no inputs of "${n}" (build it for the editor's weights)`);
    if (x.shape[0] !== p.set.answers.length) throw new Error(`preservation: "${n}" has ${x.shape[0]} inputs for ${p.set.answers.length} answers`);
  }
}

/** The base model's answer (argmax at the first target position) of each request. */
function oldAnswers(model: ModelView, requests: readonly EditRequest[]): number[] {
  const a = encodeExamples(model.tokenizer, requests, "target", model.config.n_positions);
  const b = toBatch(a);
  try {
    const logits = tf.tidy(() => gptForward(model.params, model.config, b.inputIds, { attentionMask: b.attentionMask }).logits);
    const old = firstTargetArgmax(logits, a.labels);
    logits.dispose();
    return old;
  } finally {
    disposeBatch(b);
  }
}

/**
 * A MEND edit kept off the preserved inputs that give the requests' old answers, calibrated at
 * `p.margin`; when some request would need a step above `p.maxStep`, the plain edit calibrated
 * with `fallback` instead (`preserved` says which was applied). The caller owns `edited`.
 */
export function preservedEdit(model: ModelView, editor: Editor, requests: readonly EditRequest[], p: Preservation, fallback: StepCalibration): EditResult & { preserved: boolean } {
  validateRequests(requests);
  validatePreservation(p, editor.config.innerParams);
  const t0 = performance.now();
  const inputs = preservedInputsAt(p.set, preservedRows(p.set, oldAnswers(model, requests)), editor.config.innerParams);
  try {
    const x = extensionsOf(editor);
    const keys = preconditionedKeys({ precond: x?.precond, batchBeta: x?.extensions.batchPrecond, preserved: { inputs, beta: p.beta } });
    const r = mendEdit(model, withKeys(editor, keys), requests, { stepScale: calibration({ margin: p.margin, maxScale: p.maxStep / p.margin }) });
    if ((r.info.stepScales!.found as boolean[]).every(Boolean)) return { ...r, info: { ...r.info, latencyMs: performance.now() - t0 }, preserved: true };
    disposeEdit(r);
  } finally {
    tf.dispose(Object.values(inputs));
  }
  const r = mendEdit(model, editor, requests, { stepScale: calibration(fallback) });
  return { ...r, info: { ...r.info, latencyMs: performance.now() - t0 }, preserved: false };
}
