/**
 * `mend bench`: speed and memory figures, always as ratios against a baseline measured in the same
 * run (absolute numbers depend on the machine; ratios are what the targets are about).
 *
 *  - base forward and forward+backward (all parameters) on a pretraining batch, with the project's
 *    explicit-transpose matMul gradient and with tfjs' default gradient, timed alternately;
 *  - MEND edit latency vs one forward+backward of the edit example (gradients of the edited weights),
 *    timed alternately, 5·reps runs each;
 *  - one editor meta-training step (`accumulate` examples + optimizer step);
 *  - peak RSS.
 * Each timing is the median of `reps` runs after warm-up; every run ends with a data read, so
 * queued backend work is counted.
 */
import * as tf from "@tensorflow/tfjs";
import { describeBackend, initBackend, useFastMatMulGradient } from "../model/backend";
import { disposeBatch, makeBatch } from "../model/batch";
import { DEFAULT_EDITOR_DIR, DEFAULT_MODEL_DIR, EDITOR_FLAG, JSON_FLAG, MODEL_FLAG } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";
import { calibration, DEFAULT_CALIBRATION } from "../extensions/calibrate";
import { loadEditor } from "../extensions/editorExtensions";
import { localityPicker } from "../extensions/localitySampling";
import { mendEdit } from "../mend/edit";
import { DEFAULT_FT_CONFIG, fineTuneEdit } from "../baselines/fineTune";
import { disposeUpdate } from "../model/weightUpdate";
import { disposeEditor, editorVariables } from "../mend/editor";
import { editorTrainingInfo } from "../mend/editorFolder";
import { metaBatchGrads } from "../mend/metaLoss";
import { sampleMetaGroups } from "../mend/metaExamples";
import { disposeParams, gptForward } from "../model/gpt";
import { meanNll } from "../model/loss";
import { loadModel, Model } from "../model/modelFolder";
import { DEFAULT_TRAIN_EDITOR_CONFIG } from "../mend/train";
import { Rng } from "../model/rng";
import { leanAdam } from "../model/leanAdam";
import { World } from "../world/world";
import { editAndApply, gradsOf, timeIt, timePair } from "./timing";
import { formatScaleBench, runScaleBench, runScaleStage, SCALE_STAGES, ScaleStage } from "./scaleBench";
import { GPT2_SHAPES, Gpt2Shape } from "../model/randomGpt2";

export interface BenchFigure {
  ms: number;
  [k: string]: number;
}

/** FT-to-success on the bench's edit: time, steps taken, and the lr and optimiser used. */
export interface FineTuneFigure {
  ms: number;
  steps: number;
  lr: number;
  optimizer: string;
}

export interface BenchResult {
  backend: string;
  machine: { cpus: number; cpuModel: string; node: string; platform: string };
  base: {
    batch: [number, number];
    forward: BenchFigure;
    forwardBackward: BenchFigure;
    forwardBackwardTfjsGrad: BenchFigure;
    /** tfjs default gradient time / project gradient time (same run). */
    gradSpeedup: number;
  };
  mend?: {
    edit: BenchFigure;
    editExampleForwardBackward: BenchFigure;
    /** MEND edit latency / forward+backward on the edit example (target <= 1.5). */
    editOverFwdBwd: number;
    /** A calibrated edit (calibrate.ts) and its ratio to an official edit timed alternately with it. */
    calibratedEdit: { ms: number; overEdit: number; margin: number };
    /** FT until the target is the argmax (DEFAULT_FT_CONFIG: RMSprop at the eval default lr, and at the paper's largest FT lr, 1e-4). */
    ftToSuccess: FineTuneFigure;
    ftToSuccessLr1e4: FineTuneFigure;
    ftOverEdit: number;
    ftLr1e4OverEdit: number;
    trainStep: BenchFigure & { locPerEdit: number };
  };
  peakRssMb: number;
}


async function benchBase(model: Model, world: World, reps: number): Promise<BenchResult["base"]> {
  const rows = world.corpus().slice(0, 64).map((c) => ({ prompt: c.prompt, target: c.object }));
  const b = makeBatch(model.tokenizer, rows, "all", model.config.n_positions);
  const tokens = b.inputIds.size;
  const loss = () => meanNll(gptForward(model.params, model.config, b.inputIds, { attentionMask: b.attentionMask }).logits, b.labels);
  const names = Object.keys(model.params);
  const fwd = async () => {
    const l = tf.tidy(loss);
    await l.data();
    l.dispose();
  };
  const withGradient = (fast: boolean) => async () => {
    useFastMatMulGradient(fast);
    await gradsOf(model, b, names);
  };
  const fMs = await timeIt(fwd, reps);
  const prev = useFastMatMulGradient(true);
  // Alternately, each run with its own matMul gradient installed: drift hits both sides of the ratio.
  const [fbMs, fbTfjsMs] = await timePair(withGradient(true), withGradient(false), reps, 1);
  useFastMatMulGradient(prev);
  disposeBatch(b);
  const per = (ms: number) => ({ ms, tokensPerSec: (tokens / ms) * 1000 });
  return { batch: [rows.length, b.inputIds.shape[1]], forward: per(fMs), forwardBackward: per(fbMs), forwardBackwardTfjsGrad: per(fbTfjsMs), gradSpeedup: fbTfjsMs / fbMs };
}

async function benchMend(model: Model, world: World, editorDir: string, reps: number): Promise<BenchResult["mend"]> {
  const editor = loadEditor(editorDir, model.config, model.params);
  try {
    const request = { prompt: "The president of the United States is", target: "Biden" };
    const b = makeBatch(model.tokenizer, [request], "target", model.config.n_positions);
    const inner = editor.config.innerParams;
    // Both are ~10 ms: many alternating runs, so the ratio is not at the mercy of a slow spell.
    const [editMs, fbMs] = await timePair(
      () => editAndApply(model, () => mendEdit(model, editor, [request]), inner[0]),
      () => gradsOf(model, b, inner),
      5 * reps,
    );
    // The calibrated edit (calibrate.ts, our deviation): the edit plus three batched search forwards.
    const [calMs, editMs2] = await timePair(
      () => editAndApply(model, () => mendEdit(model, editor, [request], { stepScale: calibration(DEFAULT_CALIBRATION) }), inner[0]),
      () => editAndApply(model, () => mendEdit(model, editor, [request]), inner[0]),
      2 * reps,
    );
    disposeBatch(b);
    // One meta-training step: a batch of `accumulate` examples, then an Adam step (tiny lr; weights restored after).
    const train = world.editRecords("train");
    const rng = new Rng(1);
    const { net, editLrs } = editorVariables(editor);
    const vars = { ...net, ...editLrs };
    const snapshot = Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, tf.clone(v)]));
    const opt = leanAdam(1e-12); // as trainEditor
    // Time the step the shipped editor was trained with (its locality texts per edit; official: 1).
    const trained = (editorTrainingInfo(editorDir)?.config ?? {}) as { locPerEdit?: number; extensions?: { locPerEdit?: number } };
    const locPerEdit = trained.extensions?.locPerEdit ?? trained.locPerEdit ?? 1;
    const pick = localityPicker({ locPerEdit, sameAnswerLoc: 0 }, train);
    const stepMs = await timeIt(async () => {
      const { grads } = metaBatchGrads(model, editor, sampleMetaGroups(train, rng, DEFAULT_TRAIN_EDITOR_CONFIG.accumulate, [1], 0, pick), vars, DEFAULT_TRAIN_EDITOR_CONFIG, false);
      if (grads) {
        opt.applyGradients(Object.entries(grads).map(([n, t]) => ({ name: vars[n].name, tensor: t })));
        tf.dispose(Object.values(grads));
      }
    }, Math.max(3, Math.ceil(reps / 3)), 1);
    opt.dispose();
    for (const [k, v] of Object.entries(vars)) v.assign(snapshot[k]);
    tf.dispose(Object.values(snapshot));
    // FT-to-success on the same request, with the eval default lr and the paper's largest FT lr (1e-4).
    const ft = (lr: number) => () => editAndApply(model, () => fineTuneEdit(model, [request], { ...DEFAULT_FT_CONFIG, lr, innerParams: inner, locTexts: [] }), inner[0]);
    const ft3 = await timeIt(ft(DEFAULT_FT_CONFIG.lr), Math.max(3, Math.ceil(reps / 3)), 1);
    const ft4 = await timeIt(ft(1e-4), 3, 1);
    const steps = (lr: number) => {
      const e = fineTuneEdit(model, [request], { ...DEFAULT_FT_CONFIG, lr, innerParams: inner, locTexts: [] });
      disposeUpdate(e.update);
      return e.steps;
    };
    return {
      edit: { ms: editMs },
      editExampleForwardBackward: { ms: fbMs },
      editOverFwdBwd: editMs / fbMs,
      calibratedEdit: { ms: calMs, overEdit: calMs / editMs2, margin: DEFAULT_CALIBRATION.margin },
      ftToSuccess: { ms: ft3, steps: steps(DEFAULT_FT_CONFIG.lr), lr: DEFAULT_FT_CONFIG.lr, optimizer: DEFAULT_FT_CONFIG.optimizer },
      ftToSuccessLr1e4: { ms: ft4, steps: steps(1e-4), lr: 1e-4, optimizer: DEFAULT_FT_CONFIG.optimizer },
      ftOverEdit: ft3 / editMs,
      ftLr1e4OverEdit: ft4 / editMs,
      trainStep: { ms: stepMs, examplesPerSec: (DEFAULT_TRAIN_EDITOR_CONFIG.accumulate / stepMs) * 1000, locPerEdit } };
  } finally {
    disposeEditor(editor);
  }
}

async function runBench(opts: { modelDir?: string; editorDir?: string; reps?: number; log?: (s: string) => void } = {}): Promise<BenchResult> {
  const backend = await initBackend();
  opts.log?.(`backend: ${describeBackend(backend)}`);
  const os = await import("os");
  const model = loadModel(opts.modelDir ?? DEFAULT_MODEL_DIR);
  const world = World.load();
  const reps = opts.reps ?? 10;
  try {
    opts.log?.("base model forward / forward+backward ...");
    const base = await benchBase(model, world, reps);
    const editorDir = opts.editorDir ?? DEFAULT_EDITOR_DIR;
    let mend: BenchResult["mend"];
    if (require("fs").existsSync(editorDir)) {
      opts.log?.("MEND edit and meta-training step ...");
      mend = await benchMend(model, world, editorDir, reps);
    } else opts.log?.(`no editor at ${editorDir}: skipping MEND figures`);
    return {
      backend: backend.kind,
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "unknown", node: process.version, platform: `${os.platform()} ${os.arch()}` },
      base,
      mend,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    disposeParams(model.params);
  }
}

function formatBench(r: BenchResult): string {
  const f = (x: number) => x.toFixed(1);
  const lines = [
    `machine: ${r.machine.cpus} x ${r.machine.cpuModel}, ${r.machine.platform}, node ${r.machine.node}; backend ${r.backend}`,
    `base batch [${r.base.batch}]`,
    `  forward                         ${f(r.base.forward.ms)} ms  (${r.base.forward.tokensPerSec.toFixed(0)} tokens/s)`,
    `  forward+backward (project grad) ${f(r.base.forwardBackward.ms)} ms  (${r.base.forwardBackward.tokensPerSec.toFixed(0)} tokens/s)`,
    `  forward+backward (tfjs grad)    ${f(r.base.forwardBackwardTfjsGrad.ms)} ms`,
    `  speed-up of the project's gradient: ${r.base.gradSpeedup.toFixed(2)}x`,
  ];
  if (r.mend) {
    lines.push(
      `MEND`,
      `  edit latency                    ${f(r.mend.edit.ms)} ms`,
      `  fwd+bwd on the edit example     ${f(r.mend.editExampleForwardBackward.ms)} ms`,
      `  edit / fwd+bwd                  ${r.mend.editOverFwdBwd.toFixed(2)}x`,
      `  calibrated edit (MEND-cal)      ${f(r.mend.calibratedEdit.ms)} ms, ${r.mend.calibratedEdit.overEdit.toFixed(2)}x an official edit (same run)`,
      `  FT-to-success, ${DEFAULT_FT_CONFIG.optimizer} ${DEFAULT_FT_CONFIG.lr.toExponential(0)}  ${f(r.mend.ftToSuccess.ms)} ms (${r.mend.ftToSuccess.steps} steps), ${r.mend.ftOverEdit.toFixed(1)}x a MEND edit`,
      `  FT-to-success, ${DEFAULT_FT_CONFIG.optimizer} 1e-4  ${f(r.mend.ftToSuccessLr1e4.ms)} ms (${r.mend.ftToSuccessLr1e4.steps} steps), ${r.mend.ftLr1e4OverEdit.toFixed(1)}x a MEND edit`,
      `  editor training step (10 ex., ${r.mend.trainStep.locPerEdit} x_loc each) ${f(r.mend.trainStep.ms)} ms  (${r.mend.trainStep.examplesPerSec.toFixed(1)} examples/s)`,
    );
  }
  lines.push(`peak RSS ${r.peakRssMb.toFixed(0)} MB`);
  return lines.join("\n");
}

export const spec: CommandSpec = {
  name: "bench",
  summary: "speed and memory: MEND edit vs its forward+backward, FT-to-success, a meta-training step, peak RSS (ratios from one run)",
  flags: [
    MODEL_FLAG,
    EDITOR_FLAG,
    { name: "reps", type: "int", value: "N", help: "timed runs per figure (median)", default: 10, min: 1 },
    { name: "shape", type: "string", value: "NAME", help: "instead: a random GPT-2 of this shape (edit, meta-training step, forward+backward, peak RSS)", choices: Object.keys(GPT2_SHAPES) },
    { name: "rank", type: "int", value: "R", help: "with --shape: the editor's rank (official 1920)", default: 1920, min: 1 },
    JSON_FLAG,
    { name: "stage", type: "string", value: "S", help: "with --shape: run only this stage in this process (what `--shape` runs in a child process per stage)", choices: [...SCALE_STAGES], advanced: true },
  ],
  notes: ["example: mend bench --shape gpt2 (each stage in a process of its own; MEND_WASM_THREADS=2 for the threaded wasm build)"],
};

export async function run(f: Flags): Promise<void> {
  const shape = flagString(f, "shape") as Gpt2Shape | undefined;
  const stage = flagString(f, "stage") as ScaleStage | undefined;
  if (stage && !shape) throw new Error("--stage needs --shape");
  if (shape && stage) {
    const r = await runScaleStage({ shape, stage, reps: flagNumber(f, "reps") ?? 3, rank: flagNumber(f, "rank"), log: (s) => console.error(s) });
    console.log(flagBool(f, "json") ? JSON.stringify(r) : `${stage}: ${r.ms.toFixed(0)} ms, peak RSS ${r.peakRssMb.toFixed(0)} MB`);
    return;
  }
  if (shape) {
    const r = await runScaleBench({ shape, reps: flagNumber(f, "reps") ?? 3, rank: flagNumber(f, "rank"), log: (s) => console.error(s) });
    console.log(flagBool(f, "json") ? JSON.stringify(r, null, 1) : formatScaleBench(r));
    return;
  }
  const r = await runBench({ modelDir: flagString(f, "model"), editorDir: flagString(f, "editor"), reps: flagNumber(f, "reps"), log: (s) => console.error(s) });
  console.log(flagBool(f, "json") ? JSON.stringify(r, null, 1) : formatBench(r));
}
