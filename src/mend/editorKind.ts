/**
 * Editor kinds: what meta-training (train.ts, metaLoss.ts) needs from an editor, so that the same
 * loop (sampling, validation, early stopping, checkpoints, resume) trains MEND's editor and other
 * learned editors (KE's conditioned update, ENN's learned step sizes with a trained base model).
 *
 * An editor of a kind turns the factors captured on an edit batch (u, δ of each edited weight, the
 * batch itself) into a low-rank update of every edited weight, differentiably in its variables:
 *
 *     ΔW = leftᵀ right,   left [M, d_in] (any step size folded in), right [M, d_out],
 *
 * with the batch row (request) each of the M rows belongs to, so that one forward pass can run many
 * independent edit calls (metaLoss.ts). MEND's kind (`mendKind`) is the official algorithm: its
 * variables are the editor networks and α, its statistics are updated with each training batch, and
 * its update is α Ũᵀ Δ̃. A kind may also train variables of the base model (`params`) and add terms
 * to the training loss (`extraLoss`).
 *
 * Shapes: M update rows of one edited weight, L locality rows, T time, V vocabulary.
 */
import * as tf from "@tensorflow/tfjs";
import type { Batch } from "../model/batch";
import { type Params, shapesOf } from "../model/gpt";
import type { ModelView } from "../model/paramsModel";
import type { EditRequest } from "../datasets/editRecord";
import { captureEditorFactors, lowRankEdits, rowRequests, updateEditorStats } from "./edit";
import { createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor, Editor, EditorConfig, editorVariables, lastBlocksMlp } from "./editor";
import { AttachHooks, editorFiles, loadEditor } from "./editorFolder";
import type { Factors } from "./factor";

/** One edited weight's update as low-rank rows, and the batch row (request) of each row. */
export interface RowUpdate {
  /** [M, d_in] */
  left: tf.Tensor2D;
  /** [M, d_out] */
  right: tf.Tensor2D;
  /** The batch row of the edit batch that each of the M rows comes from. */
  requests: readonly number[];
}

/** What an editor reads to make the update of a batch of edit calls. */
export interface EditCalls {
  model: ModelView;
  /** The edit batch (x_e, y_e of every request, one per row). */
  batch: Batch;
  /** The same requests as text. */
  requests: readonly EditRequest[];
  /** The factors `capture` returned for this batch. */
  factors: Factors;
  /** Flattened batch row (row · T + t) -> edit call. */
  rowCall: (row: number) => number;
}

export interface EditorKind<E> {
  /** Recorded with the run ("MEND", "KE", ...). */
  readonly name: string;
  /** A fresh editor for `model` from the kind's own settings (`TrainEditorConfig.editor`); seeded. */
  create(model: ModelView, settings: Record<string, unknown>, seed: number): E;
  /**
   * Trainable variables by optimiser group, checkpoint name -> variable, in a fixed order:
   * `net` and `base` train at the main lr, `lrs` (learned step sizes) at `editLrLr`.
   */
  variables(e: E): { net: Record<string, tf.Variable>; lrs: Record<string, tf.Variable>; base?: Record<string, tf.Variable> };
  /** The factors of an edit batch (`calls`: batch row -> edit call). The caller owns them (`disposeFactors`). */
  capture(e: E, model: ModelView, batch: Batch, calls: readonly number[]): Factors;
  /** Statistics updated with a training batch's factors, before its update is formed (MEND's normalisation). */
  observe?(e: E, factors: Factors): void;
  /** The update of every edited weight, differentiable in the kind's variables. Inside the caller's tidy or gradient closure. */
  updates(e: E, calls: EditCalls): Record<string, RowUpdate>;
  /** The parameters the edited forward passes start from (default: the model's; a kind that trains the base: its own copy). */
  params?(e: E, model: ModelView): Readonly<Params>;
  /**
   * Extra terms of the training loss, differentiable (e.g. c_base·KL(original ‖ current) on the
   * locality batch for a kind that trains the base); reported by name. Inside the gradient closure.
   */
  extraLoss?(e: E, model: ModelView, loc: Batch): Record<string, tf.Scalar>;
  /** The files of the editor's folder (`kind` of the folder: "editor"). */
  files(e: E, model: ModelView, training?: Record<string, unknown>): Record<string, Buffer>;
  /** An editor from its folder, checked against `model`. The caller owns it. */
  load(dir: string, model: ModelView): E;
  dispose(e: E): void;
}

/**
 * MEND's editor as a kind: the official algorithm (captured factors with the editor's hooks,
 * statistics updated with every training batch when it normalises, ΔW = α Ũᵀ Δ̃). `attach` rebuilds
 * the hooks of an editor folder that carries additions (src/extensions `attachExtensions`).
 */
export function mendKind(attach?: AttachHooks): EditorKind<Editor> {
  return {
    name: "MEND",
    create(model, settings, seed) {
      const cfg: EditorConfig = { ...DEFAULT_EDITOR_CONFIG, innerParams: lastBlocksMlp(model.config.n_layer), ...(settings as Partial<EditorConfig>) };
      return createEditor(cfg, shapesOf(model.params), seed);
    },
    variables(e) {
      const { net, editLrs } = editorVariables(e);
      return { net, lrs: editLrs };
    },
    capture: (e, model, batch, calls) => captureEditorFactors(model.params, model.config, batch, e, calls),
    observe(e, factors) {
      if (e.config.norm) updateEditorStats(e, factors);
    },
    updates(e, { factors, rowCall }) {
      const low = lowRankEdits(e, factors, 1, rowCall);
      return Object.fromEntries(Object.entries(low).map(([n, u]) => [n, { ...u, requests: rowRequests(factors, n) }]));
    },
    files: (e, model, training) => editorFiles(e, model.config, model.params, training),
    load: (dir, model) => loadEditor(dir, model.config, model.params, attach),
    dispose: disposeEditor,
  };
}
