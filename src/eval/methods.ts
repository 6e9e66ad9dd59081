/**
 * Editing methods behind one pure interface (model parameters in, new parameters out), and the
 * registry of the methods `mend eval` compares, all on the same edited weights:
 *
 *  - MEND: the official algorithm with the shipped editor (src/mend/edit.ts);
 *  - FT, FT+KL: the fine-tuning baselines (src/baselines/fineTune.ts);
 *  - our extensions (src/extensions): MEND-cal (step calibration), MEND-batch (the editor trained for
 *    batched edits), MEND-batch-cal, and MEND-batch-pres (edit-time preservation; opt-in).
 */
import * as tf from "@tensorflow/tfjs";
import { DEFAULT_FT_CONFIG, FineTuneConfig, fineTuneEdit, validateFineTune } from "../baselines/fineTune";
import { BATCH_EDITOR_CALIBRATION, calibration, DEFAULT_CALIBRATION, StepCalibration } from "../extensions/calibrate";
import { BATCH_EDITOR_PRESERVATION, buildPreservationSet, disposePreservationSet, preservedEdit } from "../extensions/preserve";
import { EditRequest, mendEdit } from "../mend/edit";
import { Editor } from "../mend/editor";
import { Params } from "../model/gpt";
import { ModelView } from "../model/score";
import { trainingSplitProbes, trainingSplitPrompts, World } from "../world/world";

export interface MethodEdit {
  /** Full parameter record of the edited model (only edited weights are new). */
  params: Params;
  /** The new tensors (owned by the result; free with `disposeMethodEdit`). */
  edited: Record<string, tf.Tensor>;
  latencyMs: number;
  /** Optimizer steps taken (fine-tuning methods). */
  steps?: number;
}

export interface EditMethod {
  name: string;
  edit(model: ModelView, requests: readonly EditRequest[]): MethodEdit;
  /** Frees what the method owns (a preservation set), if anything. */
  dispose?(): void;
}

export function disposeMethodEdit(e: MethodEdit): void {
  tf.dispose(Object.values(e.edited));
}

/** MEND with `editor` (its hooks included); `calibrate`: edit-time step calibration (src/extensions/calibrate.ts). */
export function mendMethod(editor: Editor, name = "MEND", calibrate: StepCalibration | null = null): EditMethod {
  const stepScale = calibrate ? calibration(calibrate) : null;
  return {
    name,
    edit(model, requests) {
      const r = mendEdit(model, editor, requests, { stepScale });
      return { params: r.params, edited: r.edited, latencyMs: r.info.latencyMs };
    },
  };
}

export function fineTuneMethod(cfg: FineTuneConfig, name = cfg.cEdit === null ? "FT" : "FT+KL"): EditMethod {
  return { name, edit: (model, requests) => fineTuneEdit(model, requests, cfg) };
}

/** What `standardMethods` may be given beyond the single-edit editor. */
export interface StandardMethodOptions {
  /** The editor trained for batched edits (methods MEND-batch*). */
  batchEditor?: Editor;
  /** Overrides the calibration margin of MEND-cal and MEND-batch-cal. */
  margin?: number;
  /** The base model (MEND-batch-pres measures its preservation set on it). */
  model?: ModelView;
  /** Overrides FT's and FT+KL's lr and optimiser (default DEFAULT_FT_CONFIG). */
  ft?: Partial<Pick<FineTuneConfig, "lr" | "optimizer">>;
}

/** The names `standardMethods` knows, in the order `mend eval` reports them. */
export const STANDARD_METHODS = ["MEND", "MEND-cal", "MEND-batch", "MEND-batch-cal", "MEND-batch-pres", "FT", "FT+KL"] as const;

/**
 * The methods compared everywhere, by name (STANDARD_METHODS). MEND-batch* need `batchEditor`;
 * MEND-batch-pres needs `model`. Free the methods with their `dispose`.
 */
export function standardMethods(editor: Editor, world: World, names: readonly string[] = ["MEND", "FT", "FT+KL"], opts: StandardMethodOptions = {}): EditMethod[] {
  const { batchEditor, margin, model } = opts;
  const inner = editor.config.innerParams;
  const ft = { ...DEFAULT_FT_CONFIG, ...opts.ft };
  validateFineTune(ft);
  const needBatch = (name: string): Editor => {
    if (!batchEditor) throw new Error(`method ${name} needs the batch-trained editor: train it (README) or pass --batch-editor DIR`);
    return batchEditor;
  };
  const all: Record<string, () => EditMethod> = {
    MEND: () => mendMethod(editor),
    "MEND-cal": () => mendMethod(editor, "MEND-cal", { ...DEFAULT_CALIBRATION, ...(margin ? { margin } : {}) }),
    "MEND-batch": () => mendMethod(needBatch("MEND-batch"), "MEND-batch"),
    "MEND-batch-cal": () => mendMethod(needBatch("MEND-batch-cal"), "MEND-batch-cal", { ...BATCH_EDITOR_CALIBRATION, ...(margin ? { margin } : {}) }),
    "MEND-batch-pres": () => {
      if (!model) throw new Error("method MEND-batch-pres needs the base model (its preservation set is measured on it)");
      const e = needBatch("MEND-batch-pres");
      const set = buildPreservationSet(model, e.config.innerParams, trainingSplitPrompts(world));
      const p = { ...BATCH_EDITOR_PRESERVATION, set };
      return {
        name: "MEND-batch-pres",
        edit(m, requests) {
          const r = preservedEdit(m, e, requests, p, BATCH_EDITOR_CALIBRATION);
          return { params: r.params, edited: r.edited, latencyMs: r.info.latencyMs };
        },
        dispose: () => disposePreservationSet(set),
      };
    },
    FT: () => fineTuneMethod({ ...ft, innerParams: inner, cEdit: null, locTexts: [] }),
    "FT+KL": () => fineTuneMethod({ ...ft, innerParams: inner, cEdit: 1e-2, locTexts: trainingSplitProbes(world, 16) }),
  };
  return names.map((n) => {
    const f = all[n];
    if (!f) throw new Error(`unknown method "${n}"; choose from ${Object.keys(all).join(", ")}`);
    return f();
  });
}
