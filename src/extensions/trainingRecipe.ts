/**
 * Meta-training with our extensions: builds the editor the official training loop starts from
 * (src/mend/train.ts `opts.init`), the locality picker and the hook loader, from the settings that
 * `mend train-editor` records under `TrainEditorConfig.extensions`.
 *
 * The batch editor (checkpoints/editor-batch) is two stages of this recipe (README): a fresh editor
 * with keyPrecond 1, then `init` from it with batchLoss "sum" and batchPrecond 10 on calls of
 * k ∈ {1, 5, 25} edits.
 */
import { ModelView } from "../model/paramsModel";
import { shapesOf } from "../model/gpt";
import { createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor, Editor, EditorConfig, lastBlocksMlp } from "../mend/editor";
import { AttachHooks } from "../mend/editorFolder";
import { LocalityPicker, otherRecordLocality, recordLocality } from "../mend/metaExamples";
import { TrainEditorConfig } from "../mend/train";
import { EditRecord } from "../datasets/editRecord";
import { attachExtensions, EditorExtensions, extendEditor, extensionsOf, loadEditor, validateExtensions } from "./editorExtensions";
import { keyPreconditioners } from "./keyPrecond";
import { localityPicker, LocalitySampling } from "./localitySampling";

export interface TrainingRecipe {
  /** Editor extensions of a fresh editor, or the settings a later stage changes (`batchLoss` "mean" removes "sum"). */
  extensions: Omit<EditorExtensions, "batchLoss"> & { batchLoss?: "mean" | "sum" };
  locality: LocalitySampling;
  /** Where training locality texts come from: the edit record's own (default) or another record (the official sampler). */
  localitySource?: "record" | "other-record";
  /** Start from this editor folder (a later training stage). */
  init?: string | null;
}

export const OFFICIAL_RECIPE: Readonly<TrainingRecipe> = Object.freeze({ extensions: {}, locality: { locPerEdit: 1, sameAnswerLoc: 0 } });

/**
 * What `trainEditor` needs for the recipe: `init` (the starting editor, owned by the trainer;
 * undefined = a fresh official editor from `cfg.editor`), `pickLocality` and `attach`.
 */
export function prepareTraining(model: ModelView, train: readonly EditRecord[], cfg: TrainEditorConfig, recipe: TrainingRecipe): { init?: Editor; pickLocality: LocalityPicker; attach: AttachHooks } {
  const { batchLoss, ...rest } = recipe.extensions;
  const x: EditorExtensions = { ...rest, ...(batchLoss === "sum" ? { batchLoss: "sum" } : {}) };
  const plain = recipe.locality.locPerEdit === 1 && recipe.locality.sameAnswerLoc === 0;
  if (recipe.localitySource === "other-record" && !plain) throw new Error("the official locality sampler (another record) draws one text per edit: drop --loc-per-edit and --same-answer-loc");
  const pickLocality = recipe.localitySource === "other-record" ? otherRecordLocality(train) : plain ? recordLocality : localityPicker(recipe.locality, train);
  if (recipe.init) {
    if (x.keyPrecond !== undefined || x.rows !== undefined) throw new Error("key preconditioning and target rows shape a new editor; an --init editor keeps its own");
    const editor = loadEditor(recipe.init, model.config, model.params);
    try {
      const h = extensionsOf(editor);
      const { batchLoss: old, ...others } = h?.extensions ?? {};
      const loss = batchLoss === undefined ? old : batchLoss === "sum" ? "sum" : undefined;
      const next: EditorExtensions = { ...others, ...(loss ? { batchLoss: loss } : {}), ...(x.batchPrecond !== undefined ? { batchPrecond: x.batchPrecond } : {}) };
      if (next.batchPrecond !== undefined && next.keyPrecond === undefined) throw new Error(`batch decorrelation (batchPrecond) needs an editor with key preconditioning; "${recipe.init}" has none`);
      extendEditor(editor, next, h?.precond);
    } catch (e) {
      disposeEditor(editor);
      throw e;
    }
    return { init: editor, pickLocality, attach: attachExtensions };
  }
  validateExtensions(x);
  if (Object.keys(x).length === 0) return { pickLocality, attach: attachExtensions };
  const ecfg: EditorConfig = { ...DEFAULT_EDITOR_CONFIG, innerParams: lastBlocksMlp(model.config.n_layer), ...cfg.editor };
  const editor = createEditor(ecfg, shapesOf(model.params), cfg.seed);
  try {
    const precond = x.keyPrecond !== undefined ? keyPreconditioners(model, editor.config.innerParams, [...new Set(train.flatMap((r) => r.prompts))], x.keyPrecond) : undefined;
    extendEditor(editor, x, precond);
  } catch (e) {
    disposeEditor(editor);
    throw e;
  }
  return { init: editor, pickLocality, attach: attachExtensions };
}
