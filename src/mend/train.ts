/**
 * Meta-training the MEND editor (mend-spec §5; official `trainer.py` / `algs/mend.py`).
 *
 * Per step, `accumulate` groups (edit calls) of meta-examples (metaExamples.ts), in one batched pass:
 *   1. u, δ of the base model on (x_e, y_e)          -- constants (first-order, as the official code)
 *   2. statistics update with the kept rows          -- training only, before normalising
 *   3. L = c_edit L_edit(θ' on x'_e) + c_loc KL(θ ‖ θ' on x_loc), θ' = θ + α g_φ(u, δ)   (metaLoss.ts)
 *   4. gradients w.r.t. φ and α; a non-finite batch is skipped and counted
 * The gradients are clipped to global norm 100 and applied. Validation on a fixed set every
 * `valEvery` steps; the best editor (lowest validation c_edit L_edit + c_loc L_loc) is kept; early
 * stopping after `patience` steps without improvement.
 *
 * Deviations from the official code, on purpose (docs/deviations.md):
 *  - lr: Adam 1e-4 for the networks instead of 1e-6 (the official value is for 59M-parameter
 *    editors and 100k+ steps; 1e-3 diverges: V ~ N(0, 1) makes one Adam step on U move the
 *    pre-activations by O(10)); cosine decay of both lrs to 10% over `maxSteps` (official: constant).
 *  - edit lrs α get their own Adam (lr `editLrLr`). Officially they sit in two optimisers and the
 *    second never moves them (its gradients are zeroed first), so they effectively learn at 1e-6.
 *  - The `accumulate` examples of a step run as one batched pass (each keeps its own edited
 *    weights); the official code accumulates one example at a time and its first step sees 11.
 *
 * The loop trains any editor kind (editorKind.ts), MEND's by default; an editor built with hooks
 * (src/extensions) trains with them; `opts.pickLocality` chooses the training edits' locality texts
 * (official: one at random).
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { lockRunFolder, recoverForRead, writeFolder } from "../model/checkpointFolder";
import { leanAdam } from "../model/leanAdam";
import { loadOptimizerState, optimizerStateBytes } from "../model/optimizerState";
import { ModelView } from "../model/paramsModel";
import { rowsPerPass } from "../model/score";
import { Rng } from "../model/rng";
import { EditRecord } from "../datasets/editRecord";
import { Editor, EditorConfig } from "./editor";
import { EditorKind, mendKind } from "./editorKind";
import { AttachHooks } from "./editorFolder";
import { ExampleResult, globalNorm, metaBatchEval, metaBatchGrads, MetaLossConfig } from "./metaLoss";
import { fixedValGroups, LocalityPicker, MetaExample, recordLocality, sampleMetaGroups } from "./metaExamples";
import { checkedFields, field, readJsonFile } from "../model/jsonFile";

export interface TrainEditorConfig extends MetaLossConfig {
  seed: number;
  /** Upper bound on optimizer steps. */
  maxSteps: number;
  /** Edits per example (group), drawn per group from this list (official: a fixed n_edits; 1 for zsRE). */
  nEdits: number[];
  /**
   * Probability that the equivalent input x'_e is x_e itself (official zsRE: 0, always a rephrase;
   * EasyEdit: 1). Scores the edit on its own prompt too.
   */
  outerIsEdit: number;
  /** The editor folder the run started from (a second stage), recorded; the caller loads it and passes `opts.init`. */
  initEditor: string | null;
  /** Examples (groups) per optimizer step (official: 10, by gradient accumulation; here one batched pass). */
  accumulate: number;
  /** Groups per batched pass (default: all `accumulate` in one); the passes' gradients are summed by their share of the step. */
  callsPerPass?: number;
  /** Adam lr for the editor networks (official 1e-6; see the header). */
  lr: number;
  /** "cosine": both lrs decay to 10% at maxSteps (official: constant). */
  lrSchedule: "constant" | "cosine";
  /** Adam lr for the per-matrix edit lrs α (official: effectively the main lr). */
  editLrLr: number;
  /** Global-norm gradient clip (official 100). */
  clipNorm: number;
  /** Validate every this many optimizer steps. */
  valEvery: number;
  /** Number of fixed validation edits. */
  valSize: number;
  /** Stop after this many optimizer steps without a better validation loss. */
  patience: number;
  /** Stop (after the next validation) once this many seconds have passed (the result says what stopped the run). */
  timeBudgetSec: number;
  /** The settings of a fresh editor (MEND: its official config; innerParams default: the last 3 blocks' MLP weights). */
  editor: Partial<EditorConfig> | Record<string, unknown>;
  /**
   * New targets per training fact in the training records (`World.editRecords("train", { perFact })`,
   * drawn by the caller; recorded here with the editor). 20 instead of the generator's 5 (docs/deviations.md).
   */
  perFact: number;
  /**
   * Where the caller drew the records from: null for the facts world, else a dataset ("zsre:FILE",
   * "counterfact:FILE"; src/datasets). Recorded with the run, so that a resumed run reads the same.
   */
  data?: string | null;
  /** The SHA-256 of `data`'s file when the run started: a resumed run refuses a changed file. */
  dataSha256?: string;
  /** What the caller's additions were (recorded with the run and the editor, read by nothing here). */
  extensions?: Record<string, unknown>;
}

export const DEFAULT_TRAIN_EDITOR_CONFIG: Readonly<TrainEditorConfig> = Object.freeze({
  seed: 0,
  maxSteps: 1500,
  nEdits: [1],
  outerIsEdit: 0,
  initEditor: null,
  accumulate: 10,
  lr: 1e-4,
  lrSchedule: "cosine",
  editLrLr: 1e-3,
  clipNorm: 100,
  cEdit: 0.1,
  cLoc: 1.0,
  valEvery: 50,
  valSize: 80,
  patience: 500,
  timeBudgetSec: 3600,
  editor: {},
  perFact: 20,
});

export interface ValidationResult {
  lossEdit: number;
  lossLoc: number;
  /** c_edit L_edit + c_loc L_loc (early-stopping criterion, official `loss/total_edit_val`). */
  total: number;
  editAcc: number;
  locUnchanged: number;
}

/**
 * Validation on fixed groups (each group one edit call): losses weighted per group as in training,
 * edit accuracy and locality averaged over all edits. `kind`: the editor's (default MEND's).
 */
export function validateEditor<E = Editor>(m: ModelView, editor: E, groups: readonly (readonly MetaExample[])[], c: MetaLossConfig, opts: { kind?: EditorKind<E>; maxEditsPerPass?: number } = {}): ValidationResult {
  const maxEditsPerPass = Math.max(1, Math.min(opts.maxEditsPerPass ?? 40, Math.floor(rowsPerPass(m.config, 3 * (opts.maxEditsPerPass ?? 40)) / 3))); // three texts per edit
  const rs: ExampleResult[] = [];
  let lossEdit = 0;
  let lossLoc = 0;
  for (let s = 0; s < groups.length; ) {
    const chunk: (readonly MetaExample[])[] = [];
    let edits = 0;
    while (s < groups.length && (chunk.length === 0 || edits + groups[s].length <= maxEditsPerPass)) {
      edits += groups[s].length;
      chunk.push(groups[s++]);
    }
    const r = metaBatchEval(m, editor, chunk, c, opts.kind);
    rs.push(...r);
    // A pass's losses are its weighted means (the weights sum to 1 within the pass); its share of
    // the whole set is its number of calls.
    const share = chunk.length / groups.length;
    lossEdit += r[0].lEdit * share;
    lossLoc += r[0].lLoc * share;
  }
  const mean = (f: (r: ExampleResult) => number) => rs.reduce((a, r) => a + f(r), 0) / rs.length;
  return { lossEdit, lossLoc, total: c.cEdit * lossEdit + c.cLoc * lossLoc, editAcc: mean((r) => r.editAcc), locUnchanged: mean((r) => r.locUnchanged) };
}

export interface TrainEditorProgress {
  step: number;
  maxSteps: number;
  examples: number;
  skipped: number;
  /** Running means over the last optimizer step's examples. */
  lossEdit: number;
  lossLoc: number;
  editAcc: number;
  locUnchanged: number;
  /** On validation steps. */
  val?: ValidationResult;
  /** The latest validation. */
  lastVal?: ValidationResult;
  elapsedSec: number;
}

export interface TrainerState {
  /** The editor's kind (absent in runs written before kinds: MEND). */
  kind?: string;
  step: number;
  examples: number;
  skipped: number;
  rngState: number;
  bestVal: number;
  bestStep: number;
  elapsedSec: number;
  history: TrainEditorProgress[];
  config: TrainEditorConfig;
}

/** A run's trainer_state.json, checked as data (wrong types and nulls named by file and field). */
export function readTrainerState(file: string): TrainerState {
  const st = checkedFields<TrainerState>(readJsonFile(file), file, {
    kind: field.optional(field.string),
    step: field.count,
    examples: field.count,
    skipped: field.count,
    rngState: field.integer,
    bestVal: field.orNull(field.number), // Infinity before the first validation is written as null
    bestStep: field.count,
    elapsedSec: field.number,
    history: field.list,
    config: field.object,
  });
  st.bestVal ??= Infinity;
  return st;
}

/** What ended a run: its step count, early stopping, or the time budget. */
export type StopReason = "steps" | "patience" | "time budget";

/** Consecutive skipped (non-finite) steps after which a run is stopped as diverged. */
const MAX_SKIPPED_IN_A_ROW = 20;

/** Global-norm clip of a gradient record whose norm is `norm`, in place. */
function clipGlobalNorm(grads: Record<string, tf.Tensor>, norm: number, maxNorm: number): void {
  if (norm > maxNorm) {
    for (const k of Object.keys(grads)) {
      const g = grads[k];
      grads[k] = tf.mul(g, maxNorm / norm);
      g.dispose();
    }
  }
}

/**
 * One step's gradients over its groups, `cfg.callsPerPass` groups per batched pass (all in one by
 * default). Each pass's loss is the mean over its groups (weights summing to 1), so the passes'
 * gradients are summed weighted by their share of the step's groups: the step's mean loss, in the
 * memory of one pass. A pass with a non-finite loss or gradient skips the whole step (as one pass
 * would). Each pass updates the statistics before normalising, so a later pass sees an earlier
 * one's rows (closer to the official one-example-at-a-time accumulation). Returns owned gradients.
 */
function stepGrads<E>(m: ModelView, editor: E, batch: MetaExample[][], vars: Record<string, tf.Variable>, cfg: TrainEditorConfig, kind: EditorKind<E>): { grads: Record<string, tf.Tensor> | null; gradNorm: number; results: ExampleResult[] } {
  const per = Math.max(1, Math.min(cfg.callsPerPass ?? batch.length, batch.length));
  if (per >= batch.length) return metaBatchGrads(m, editor, batch, vars, cfg, true, kind);
  let sum: Record<string, tf.Tensor> | null = null;
  const results: ExampleResult[] = [];
  let finite = true;
  for (let i = 0; i < batch.length; i += per) {
    const part = batch.slice(i, i + per);
    const r = metaBatchGrads(m, editor, part, vars, cfg, true, kind);
    results.push(...r.results);
    if (!r.grads || !finite) {
      finite = false;
      if (r.grads) tf.dispose(Object.values(r.grads));
      continue;
    }
    const share = part.length / batch.length;
    const prev: Record<string, tf.Tensor> | null = sum;
    sum = Object.fromEntries(Object.entries(r.grads).map(([n, g]) => [n, tf.tidy(() => (prev ? tf.add(prev[n], tf.mul(g, share)) : tf.mul(g, share)))]));
    tf.dispose([...Object.values(r.grads), ...(prev ? Object.values(prev) : [])]);
  }
  if (!finite || !sum) {
    if (sum) tf.dispose(Object.values(sum));
    return { grads: null, gradNorm: NaN, results };
  }
  return { grads: sum, gradNorm: globalNorm(sum), results };
}

/** What `trainEditor` takes besides the data and settings. */
export interface TrainOptions<E> {
  resume?: boolean;
  onProgress?: (p: TrainEditorProgress) => void;
  /** The kind of editor trained (default: MEND's, with `attach` for its hooks). */
  kind?: EditorKind<E>;
  /** The editor to start from (owned by the trainer from here on); default a fresh editor of the kind from `cfg.editor`. */
  init?: E;
  /** MEND: rebuilds an editor's hooks when a run folder is loaded (resume, best): src/extensions' `attachExtensions`. */
  attach?: AttachHooks;
  pickLocality?: LocalityPicker;
  /** With `resume`: settings that may change when a run continues (a larger maxSteps trains on). */
  resumeWith?: Partial<Pick<TrainEditorConfig, "maxSteps" | "timeBudgetSec" | "patience">>;
}

export interface TrainResult {
  bestDir: string;
  best: ValidationResult;
  steps: number;
  stepsRun: number;
  elapsedSec: number;
  history: TrainEditorProgress[];
  stoppedBy: StopReason;
}

/**
 * Train an editor for `model` on `train` records, validating on `val` records. Writes
 * `runDir/last` (editor + optimizers + state, for `resume`) and `runDir/best`. Returns the best
 * editor's folder and its validation result. `opts.kind`: the editor's kind (default MEND's). The run folder
 * is locked for the whole run (a second run on it is refused).
 */
export async function trainEditor<E = Editor>(
  model: ModelView,
  train: readonly EditRecord[],
  val: readonly EditRecord[],
  runDir: string,
  cfg: TrainEditorConfig = DEFAULT_TRAIN_EDITOR_CONFIG,
  opts: TrainOptions<E> = {},
): Promise<TrainResult> {
  if (train.length === 0) throw new Error("trainEditor: no training records");
  if (val.length === 0) throw new Error("trainEditor: no validation records");
  const kind = opts.kind ?? (mendKind(opts.attach) as unknown as EditorKind<E>); // without a kind the editor is MEND's
  let release: () => void;
  try {
    release = lockRunFolder(runDir); // for the whole run: a second run on the folder is refused
  } catch (e) {
    opts.init && kind.dispose(opts.init);
    throw e;
  }
  try {
    return await trainLocked(model, train, val, runDir, cfg, opts, kind);
  } finally {
    release();
  }
}

async function trainLocked<E>(model: ModelView, train: readonly EditRecord[], val: readonly EditRecord[], runDir: string, cfg: TrainEditorConfig, opts: TrainOptions<E>, kind: EditorKind<E>): Promise<TrainResult> {
  const lastDir = path.join(runDir, "last");
  const bestDir = path.join(runDir, "best");
  const statePath = path.join(lastDir, "trainer_state.json");
  const resuming = Boolean(opts.resume);
  if (resuming) recoverForRead(lastDir);
  if (resuming && !fs.existsSync(statePath)) {
    opts.init && kind.dispose(opts.init);
    throw new Error(`nothing to resume: ${statePath} not found (start a new run without --resume, or name the run folder)`);
  }
  let st: TrainerState;
  let editor: E;
  if (resuming) {
    st = readTrainerState(statePath);
    opts.init && kind.dispose(opts.init);
    if ((st.kind ?? "MEND") !== kind.name) throw new Error(`${runDir} trains a ${st.kind ?? "MEND"} editor, not ${kind.name}: resume it as what it is`);
    cfg = { ...st.config, ...(opts.resumeWith ?? {}) };
    st.config = cfg;
    editor = kind.load(lastDir, model);
  } else {
    editor = opts.init ?? kind.create(model, cfg.editor, cfg.seed);
    st = { kind: kind.name, step: 0, examples: 0, skipped: 0, rngState: new Rng(cfg.seed).state, bestVal: Infinity, bestStep: 0, elapsedSec: 0, history: [], config: cfg };
  }
  const rng = new Rng(0);
  rng.state = st.rngState;
  const pickLocality = opts.pickLocality ?? recordLocality;
  const groups = kind.variables(editor);
  const net = { ...groups.net, ...(groups.base ?? {}) }; // trained at the main lr
  const editLrs = groups.lrs; // trained at editLrLr
  const vars = { ...net, ...editLrs };
  // Adam with ε = 1e-8 as PyTorch (tfjs' default is 1e-7); tfjs' arithmetic, one variable's temporaries at a time (leanAdam.ts).
  const netOpt = leanAdam(cfg.lr, 0.9, 0.999, 1e-8);
  const lrOpt = leanAdam(cfg.editLrLr, 0.9, 0.999, 1e-8);
  if (resuming) {
    await loadOptimizerState(path.join(lastDir, "optimizer_net.safetensors"), netOpt);
    await loadOptimizerState(path.join(lastDir, "optimizer_lr.safetensors"), lrOpt);
  }
  const valExamples = fixedValGroups(val, cfg.valSize, cfg.nEdits);
  const t0 = Date.now() - st.elapsedSec * 1000;
  const startStep = st.step;
  let lastSaved = st.step;
  let skippedInARow = 0;
  let stoppedBy: StopReason = "steps";
  const kept = () => (lastSaved > 0 ? `the last good checkpoint (step ${lastSaved}) is kept in ${lastDir}` : "no checkpoint had been written yet");
  const training = (extra: Record<string, unknown>) => ({ steps: st.step, examples: st.examples, skipped: st.skipped, config: cfg, ...extra });

  try {
    while (st.step < cfg.maxSteps) {
      const decay = cfg.lrSchedule === "cosine" ? 0.1 + 0.45 * (1 + Math.cos((Math.PI * st.step) / cfg.maxSteps)) : 1;
      (netOpt as unknown as { learningRate: number }).learningRate = cfg.lr * decay;
      (lrOpt as unknown as { learningRate: number }).learningRate = cfg.editLrLr * decay;
      const batch = sampleMetaGroups(train, rng, cfg.accumulate, cfg.nEdits, cfg.outerIsEdit, pickLocality);
      const { grads, gradNorm, results: rs } = stepGrads(model, editor, batch, vars, cfg, kind);
      const nEx = batch.reduce((a, g) => a + g.length, 0);
      st.examples += nEx;
      if (grads) {
        clipGlobalNorm(grads, gradNorm, cfg.clipNorm);
        netOpt.applyGradients(Object.keys(net).map((n) => ({ name: vars[n].name, tensor: grads[n] })));
        if (Object.keys(editLrs).length) lrOpt.applyGradients(Object.keys(editLrs).map((n) => ({ name: vars[n].name, tensor: grads[n] })));
        tf.dispose(Object.values(grads));
        skippedInARow = 0;
      } else {
        st.skipped += nEx;
        if (++skippedInARow >= MAX_SKIPPED_IN_A_ROW) throw new Error(`meta-training diverged: the last ${skippedInARow} steps had non-finite losses or gradients (step ${st.step + 1}); ${kept()}. Lower --lr and start again`);
      }
      st.step++;
      const mean = (f: (r: ExampleResult) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
      const p: TrainEditorProgress = {
        step: st.step,
        maxSteps: cfg.maxSteps,
        examples: st.examples,
        skipped: st.skipped,
        lossEdit: mean((r) => r.lEdit),
        lossLoc: mean((r) => r.lLoc),
        editAcc: mean((r) => r.editAcc),
        locUnchanged: mean((r) => r.locUnchanged),
        elapsedSec: (Date.now() - t0) / 1000,
      };
      const valNow = st.step % cfg.valEvery === 0 || st.step === cfg.maxSteps;
      if (valNow) {
        p.val = validateEditor(model, editor, valExamples, cfg, { kind });
        if (!Number.isFinite(p.val.total)) throw new Error(`meta-training diverged: the validation loss is ${p.val.total} at step ${st.step}; ${kept()}. Lower --lr and start again`);
        st.history.push(p);
        st.rngState = rng.state;
        st.elapsedSec = p.elapsedSec;
        if (p.val.total < st.bestVal) {
          st.bestVal = p.val.total;
          st.bestStep = st.step;
          writeFolder(bestDir, "editor", kind.files(editor, model, training({ val: p.val })));
        }
        // The resume point as one unit: editor, optimizer slots and trainer state of the same step.
        writeFolder(lastDir, "editor-run", {
          ...kind.files(editor, model, training({ val: p.val })),
          "optimizer_net.safetensors": await optimizerStateBytes(netOpt),
          "optimizer_lr.safetensors": await optimizerStateBytes(lrOpt),
          "trainer_state.json": JSON.stringify(st),
        });
        lastSaved = st.step;
      }
      opts.onProgress?.({ ...p, lastVal: st.history[st.history.length - 1]?.val });
      await new Promise((r) => setImmediate(r)); // let notebook displays and progress output draw
      if (valNow && st.step - st.bestStep >= cfg.patience) {
        stoppedBy = "patience";
        break;
      }
      if (valNow && p.elapsedSec > cfg.timeBudgetSec) {
        stoppedBy = "time budget";
        break;
      }
    }
  } finally {
    netOpt.dispose();
    lrOpt.dispose();
    kind.dispose(editor);
  }
  let bestEditor: E | undefined;
  try {
    bestEditor = kind.load(bestDir, model);
    const best = validateEditor(model, bestEditor, valExamples, cfg, { kind });
    return { bestDir, best, steps: st.step, stepsRun: st.step - startStep, elapsedSec: (Date.now() - t0) / 1000, history: st.history, stoppedBy };
  } finally {
    if (bestEditor) kind.dispose(bestEditor);
  }
}
