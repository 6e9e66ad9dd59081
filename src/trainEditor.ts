/**
 * Meta-training the MEND editor (mend-spec §5; official `trainer.py` / `algs/mend.py`).
 *
 * Each example is a 5-tuple drawn from a training edit record: the edit (x_e, y_e) from one training
 * template, an equivalent input (x'_e, y_e) from another training template of the same fact, and a
 * locality example x_loc (any class). Per example:
 *   1. u, δ of the base model on (x_e, y_e)          -- constants (first-order, as the official code)
 *   2. statistics update with the kept rows          -- training only, before normalising
 *   3. L = c_edit L_edit(θ' on x'_e) + c_loc KL(θ ‖ θ' on x_loc), θ' = θ + α g_φ(u, δ)
 *   4. gradients w.r.t. φ and α; examples with non-finite gradients are skipped and counted
 * Every `accumulate` examples the summed gradients (each ÷ accumulate) are clipped to global norm 100
 * and applied. Validation on a fixed set every `valEvery` steps; the best editor (lowest validation
 * loss c_edit L_edit + c_loc L_loc) is kept; early stopping after `patience` steps without improvement.
 *
 * Deviations from the official code, on purpose (also in README):
 *  - lr: Adam 1e-4 for the networks instead of 1e-6. The official value is tuned for 59M-parameter
 *    editors over 82M-11B models and 100k+ steps; our toy editor trains in minutes with the larger lr.
 *    (1e-3 diverges: V ~ N(0, 1), so one Adam step of 1e-3 on every entry of U moves the
 *    pre-activations by O(10).)
 *  - edit lrs α get their own Adam (lr `editLrLr`). Officially they sit in two optimisers and the
 *    second never moves them (its gradients are zeroed first), so they effectively learn at 1e-6.
 *  - Optimizer steps happen every `accumulate` examples exactly (the official first step sees 11).
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, encodeExamples, TextExample, toBatch } from "./batch";
import { editedWeights, updateEditorStats } from "./edit";
import { createEditor, disposeEditor, DEFAULT_EDITOR_CONFIG, Editor, EditorConfig, editorVariables, lastBlocksMlp } from "./editor";
import { loadEditor, saveEditor } from "./editorIO";
import { captureFactors, disposeFactors } from "./factor";
import { metaLoss, MetaLossConfig, preEditLogits } from "./metaLoss";
import { loadOptimizerState, saveOptimizerState } from "./optimizerState";
import { ProgressBar } from "./progress";
import { Rng } from "./rng";
import { writeFileAtomic } from "./safetensors";
import { ModelView } from "./score";
import { EditRecord } from "./world";

export interface TrainEditorConfig extends MetaLossConfig {
  seed: number;
  /** Upper bound on optimizer steps. */
  maxSteps: number;
  /** Edits per example, drawn uniformly from this list per example (official: a fixed n_edits, 1 for zsRE). */
  nEdits: number[];
  /** Examples per optimizer step (gradient accumulation; official 10). */
  accumulate: number;
  /** Adam lr for the editor networks (official 1e-6; see the header). */
  lr: number;
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
  /** Stop (after the next validation) once this many seconds have passed. */
  timeBudgetSec: number;
  editor: Partial<EditorConfig>;
}

export const DEFAULT_TRAIN_EDITOR_CONFIG: Readonly<TrainEditorConfig> = Object.freeze({
  seed: 0,
  maxSteps: 1000,
  nEdits: [1],
  accumulate: 10,
  lr: 1e-4,
  editLrLr: 1e-3,
  clipNorm: 100,
  cEdit: 0.1,
  cLoc: 1.0,
  valEvery: 25,
  valSize: 60,
  patience: 200,
  timeBudgetSec: 540,
  editor: {},
});

/** One meta-training example: k edits (k = 1 for a single edit) with their equivalents and locality texts. */
export interface MetaExample {
  editInner: TextExample[];
  editOuter: TextExample[];
  loc: TextExample[];
  locClass: string[];
}

/**
 * Draw k records of distinct facts; per record x_e and x'_e are two different training templates
 * and the locality text is one of its locality examples (any class).
 */
export function sampleMetaExample(records: readonly EditRecord[], rng: Rng, k = 1): MetaExample {
  const ex: MetaExample = { editInner: [], editOuter: [], loc: [], locClass: [] };
  const used = new Set<string>();
  for (let tries = 0; ex.editInner.length < k && tries < 50 * k; tries++) {
    const r = records[rng.int(records.length)];
    const key = `${r.subject}|${r.relation}`;
    if (used.has(key)) continue;
    used.add(key);
    const [i, j] = rng.sample(r.prompts.map((_, q) => q), 2);
    const free = r.locality.filter((l) => !used.has(`${l.subject}|${l.relation}`)); // not about a fact edited in this example
    const loc = rng.choice(free.length ? free : r.locality);
    ex.editInner.push({ prompt: r.prompts[i], target: r.target_new });
    ex.editOuter.push({ prompt: r.prompts[j ?? i], target: r.target_new });
    ex.loc.push({ prompt: loc.prompt, target: loc.target });
    ex.locClass.push(loc.class);
  }
  return ex;
}

/** The fixed validation examples: first training template as x_e, second as x'_e, the k-th locality example. */
export function fixedMetaExample(r: EditRecord, k: number): MetaExample {
  const loc = r.locality[k % r.locality.length];
  return {
    editInner: [{ prompt: r.prompts[0], target: r.target_new }],
    editOuter: [{ prompt: r.prompts[1 % r.prompts.length], target: r.target_new }],
    loc: [{ prompt: loc.prompt, target: loc.target }],
    locClass: [loc.class],
  };
}

export interface ExampleResult {
  lEdit: number;
  lLoc: number;
  /** Edited model gets every target token of x'_e right (the paper's edit success). */
  editAcc: number;
  /** Fraction of locality target positions whose argmax is unchanged by the edit. */
  locUnchanged: number;
}

interface Encoded {
  inner: Batch;
  outer: Batch;
  loc: Batch;
  outerLabels: number[][];
  outerPos: number[][];
  locPos: number[][];
}

function encodeMeta(m: ModelView, ex: MetaExample): Encoded {
  const T = m.config.n_positions;
  const a = encodeExamples(m.tokenizer, ex.editInner, "target", T);
  const o = encodeExamples(m.tokenizer, ex.editOuter, "target", T);
  const l = encodeExamples(m.tokenizer, ex.loc, "target", T);
  return { inner: toBatch(a), outer: toBatch(o), loc: toBatch(l), outerLabels: o.labels, outerPos: o.targetPositions, locPos: l.targetPositions };
}

function disposeEncoded(e: Encoded): void {
  disposeBatch(e.inner);
  disposeBatch(e.outer);
  disposeBatch(e.loc);
}

/** Metrics of one example from argmax tokens [k, T]: exact match of each x'_e, unchanged locality answers. */
function summarise(e: Encoded, outerArgmax: number[][], locPre: number[][], locPost: number[][], lEdit: number, lLoc: number): ExampleResult {
  const acc = e.outerPos.map((pos, i) => (pos.every((t) => outerArgmax[i][t] === e.outerLabels[i][t]) ? 1 : 0));
  const loc = e.locPos.map((pos, i) => pos.filter((t) => locPre[i][t] === locPost[i][t]).length / pos.length);
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return { lEdit, lLoc, editAcc: avg(acc), locUnchanged: avg(loc) };
}

/**
 * One meta-training example: statistics update (if `train`), meta-loss and its gradients w.r.t.
 * `vars`. Returns the gradients (caller owns them; null when not finite) and the example's metrics.
 */
export function metaExampleGrads(
  m: ModelView,
  editor: Editor,
  ex: MetaExample,
  vars: Record<string, tf.Variable>,
  c: MetaLossConfig,
  train = true,
): { grads: Record<string, tf.Tensor> | null; result: ExampleResult } {
  const e = encodeMeta(m, ex);
  const factors = captureFactors(m.params, m.config, e.inner, editor.config.innerParams);
  try {
    if (train && editor.config.norm) updateEditorStats(editor, factors);
    const pre = preEditLogits(m.params, m.config, e.loc);
    const stash: tf.Tensor[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const edited = editedWeights(m.params, editor, factors);
      const r = metaLoss(m.params, m.config, edited, e.outer, e.loc, pre, c);
      stash.push(tf.keep(tf.stack([r.lEdit, r.lLoc])), tf.keep(tf.argMax(r.outerLogits, -1)), tf.keep(tf.argMax(r.locLogits, -1)));
      return r.total;
    }, Object.values(vars));
    const locPre = tf.tidy(() => tf.argMax(pre, -1));
    const [losses, outerAm, locPost] = stash;
    const [lEdit, lLoc] = losses.dataSync();
    const result = summarise(e, outerAm.arraySync() as number[][], locPre.arraySync() as number[][], locPost.arraySync() as number[][], lEdit, lLoc);
    const sq = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
    const finite = Number.isFinite(sq.dataSync()[0]) && Number.isFinite(value.dataSync()[0]);
    tf.dispose([value, pre, locPre, sq, ...stash]);
    if (!finite) {
      tf.dispose(Object.values(grads));
      return { grads: null, result };
    }
    // variableGrads keys grads by the variables' engine names; map back to checkpoint names.
    const byName: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(vars)) byName[k] = grads[v.name];
    return { grads: byName, result };
  } finally {
    disposeFactors(factors);
    disposeEncoded(e);
  }
}

/** Edit-and-measure without gradients (validation): same metrics, statistics frozen. */
export function metaExampleEval(m: ModelView, editor: Editor, ex: MetaExample, c: MetaLossConfig): ExampleResult {
  const e = encodeMeta(m, ex);
  const factors = captureFactors(m.params, m.config, e.inner, editor.config.innerParams);
  try {
    const out = tf.tidy(() => {
      const pre = preEditLogits(m.params, m.config, e.loc);
      const edited = editedWeights(m.params, editor, factors);
      const r = metaLoss(m.params, m.config, edited, e.outer, e.loc, pre, c);
      return [tf.stack([r.lEdit, r.lLoc]), tf.argMax(r.outerLogits, -1), tf.argMax(pre, -1), tf.argMax(r.locLogits, -1)];
    });
    const [l, oa, lp, lq] = out;
    const [lEdit, lLoc] = l.dataSync();
    const res = summarise(e, oa.arraySync() as number[][], lp.arraySync() as number[][], lq.arraySync() as number[][], lEdit, lLoc);
    tf.dispose(out);
    return res;
  } finally {
    disposeFactors(factors);
    disposeEncoded(e);
  }
}

export interface ValidationResult {
  lossEdit: number;
  lossLoc: number;
  /** c_edit L_edit + c_loc L_loc (early-stopping criterion, official `loss/total_edit_val`). */
  total: number;
  editAcc: number;
  locUnchanged: number;
}

export function validateEditor(m: ModelView, editor: Editor, examples: readonly MetaExample[], c: MetaLossConfig): ValidationResult {
  const rs = examples.map((ex) => metaExampleEval(m, editor, ex, c));
  const mean = (f: (r: ExampleResult) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
  const lossEdit = mean((r) => r.lEdit);
  const lossLoc = mean((r) => r.lLoc);
  return { lossEdit, lossLoc, total: c.cEdit * lossEdit + c.cLoc * lossLoc, editAcc: mean((r) => r.editAcc), locUnchanged: mean((r) => r.locUnchanged) };
}

export interface TrainEditorProgress {
  step: number;
  examples: number;
  skipped: number;
  /** Running means over the last optimizer step's examples. */
  lossEdit: number;
  lossLoc: number;
  editAcc: number;
  locUnchanged: number;
  val?: ValidationResult;
  elapsedSec: number;
}

interface TrainerState {
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

/** Global-norm clip of a gradient record, in place (returns the norm before clipping). */
function clipGlobalNorm(grads: Record<string, tf.Tensor>, maxNorm: number): number {
  const sq = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
  const norm = Math.sqrt(sq.dataSync()[0]);
  sq.dispose();
  if (norm > maxNorm) {
    for (const k of Object.keys(grads)) {
      const g = grads[k];
      grads[k] = tf.mul(g, maxNorm / norm);
      g.dispose();
    }
  }
  return norm;
}

/**
 * Train an editor for `model` on `train` records, validating on `val` records. Writes
 * `runDir/last` (editor + optimizers + state, for `resume`) and `runDir/best`. Returns the best
 * editor's folder and its validation result.
 */
export async function trainEditor(
  model: ModelView,
  train: readonly EditRecord[],
  val: readonly EditRecord[],
  runDir: string,
  cfg: TrainEditorConfig = DEFAULT_TRAIN_EDITOR_CONFIG,
  opts: { resume?: boolean; onProgress?: (p: TrainEditorProgress) => void; quiet?: boolean } = {},
): Promise<{ bestDir: string; best: ValidationResult; steps: number; elapsedSec: number; history: TrainEditorProgress[] }> {
  if (train.length === 0) throw new Error("trainEditor: no training records");
  if (val.length === 0) throw new Error("trainEditor: no validation records");
  const lastDir = path.join(runDir, "last");
  const bestDir = path.join(runDir, "best");
  const statePath = path.join(lastDir, "trainer_state.json");
  const resuming = Boolean(opts.resume && fs.existsSync(statePath));
  let st: TrainerState;
  let editor: Editor;
  if (resuming) {
    st = JSON.parse(fs.readFileSync(statePath, "utf8")) as TrainerState;
    cfg = st.config;
    editor = loadEditor(lastDir, model.config, model.params);
  } else {
    const ecfg: EditorConfig = { ...DEFAULT_EDITOR_CONFIG, innerParams: lastBlocksMlp(model.config.n_layer), ...cfg.editor };
    const shapes = Object.fromEntries(ecfg.innerParams.map((n) => [n, model.params[n]?.shape ?? []]));
    editor = createEditor(ecfg, shapes, cfg.seed);
    st = { step: 0, examples: 0, skipped: 0, rngState: new Rng(cfg.seed).state, bestVal: Infinity, bestStep: 0, elapsedSec: 0, history: [], config: cfg };
  }
  const rng = new Rng(0);
  rng.state = st.rngState;
  const { net, editLrs } = editorVariables(editor);
  const vars = { ...net, ...editLrs };
  const netOpt = tf.train.adam(cfg.lr, 0.9, 0.999, 1e-8); // ε = 1e-8 as PyTorch (tfjs' default is 1e-7)
  const lrOpt = tf.train.adam(cfg.editLrLr, 0.9, 0.999, 1e-8);
  if (resuming) {
    await loadOptimizerState(path.join(lastDir, "optimizer_net.safetensors"), netOpt);
    await loadOptimizerState(path.join(lastDir, "optimizer_lr.safetensors"), lrOpt);
  }
  const valExamples = val.slice(0, cfg.valSize).map((r, k) => fixedMetaExample(r, k));
  const bar = opts.quiet ? null : new ProgressBar(cfg.maxSteps, "train-editor");
  const t0 = Date.now() - st.elapsedSec * 1000;
  const training = (extra: Record<string, unknown>) => ({ steps: st.step, examples: st.examples, skipped: st.skipped, config: cfg, ...extra });

  try {
    while (st.step < cfg.maxSteps) {
      const acc: Record<string, tf.Tensor> = {};
      const rs: ExampleResult[] = [];
      for (let k = 0; k < cfg.accumulate; k++) {
        const ex = sampleMetaExample(train, rng, cfg.nEdits[rng.int(cfg.nEdits.length)]);
        const { grads, result } = metaExampleGrads(model, editor, ex, vars, cfg, true);
        st.examples++;
        rs.push(result);
        if (!grads) {
          st.skipped++;
          continue;
        }
        for (const [n, g] of Object.entries(grads)) {
          const scaled = tf.div(g, cfg.accumulate);
          g.dispose();
          if (acc[n]) {
            const s = tf.add(acc[n], scaled);
            tf.dispose([acc[n], scaled]);
            acc[n] = s;
          } else acc[n] = scaled;
        }
      }
      if (Object.keys(acc).length) {
        clipGlobalNorm(acc, cfg.clipNorm);
        netOpt.applyGradients(Object.keys(net).map((n) => ({ name: vars[n].name, tensor: acc[n] })));
        lrOpt.applyGradients(Object.keys(editLrs).map((n) => ({ name: vars[n].name, tensor: acc[n] })));
        tf.dispose(Object.values(acc));
      }
      st.step++;
      const mean = (f: (r: ExampleResult) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
      const p: TrainEditorProgress = {
        step: st.step,
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
        p.val = validateEditor(model, editor, valExamples, cfg);
        st.history.push(p);
        st.rngState = rng.state;
        st.elapsedSec = p.elapsedSec;
        if (p.val.total < st.bestVal) {
          st.bestVal = p.val.total;
          st.bestStep = st.step;
          saveEditor(bestDir, editor, model.config, model.params, training({ val: p.val }));
        }
        saveEditor(lastDir, editor, model.config, model.params, training({ val: p.val }));
        await saveOptimizerState(path.join(lastDir, "optimizer_net.safetensors"), netOpt);
        await saveOptimizerState(path.join(lastDir, "optimizer_lr.safetensors"), lrOpt);
        writeFileAtomic(statePath, JSON.stringify(st));
      }
      opts.onProgress?.(p);
      const v = st.history[st.history.length - 1]?.val;
      bar?.update(st.step, { "L_edit": p.lossEdit, "L_loc": p.lossLoc, "edit acc": p.editAcc, "val ES": v?.editAcc ?? NaN, "val loc": v?.locUnchanged ?? NaN, skipped: st.skipped }, valNow);
      if (valNow && (st.step - st.bestStep >= cfg.patience || p.elapsedSec > cfg.timeBudgetSec)) break;
    }
  } finally {
    bar?.done();
    netOpt.dispose();
    lrOpt.dispose();
    disposeEditor(editor);
  }
  const bestEditor = loadEditor(bestDir, model.config, model.params);
  const best = validateEditor(model, bestEditor, valExamples, cfg);
  disposeEditor(bestEditor);
  return { bestDir, best, steps: st.step, elapsedSec: (Date.now() - t0) / 1000, history: st.history };
}
