/**
 * `mend bench --shape gpt2|gpt2-medium|...`: what MEND costs at a real GPT-2 shape, on random
 * weights (nothing downloaded; the cost of the arithmetic does not depend on the values):
 *
 *  - a MEND edit (one request, official editor: rank 1920, last three blocks' mlp.c_fc/c_proj);
 *  - forward+backward on 8 x 16 tokens (the mean NLL of random token ids; gradsOf), gradients of every
 *    parameter but the tied wte (MEND never edits it; a trained wte would take wasm's one-hot path);
 *  - one meta-training step on one (edit, equivalent, locality) example, with the Adam step;
 *  - peak RSS.
 * Each stage runs in a process of its own (`--stage`): wasm's memory is 4 GB and never shrinks, so
 * stages that each fit can fail one after another, and a stage's peak RSS is its process's. A stage
 * that does not fit (the rank-1920 meta-training step on wasm) is reported, not fatal. The editor's
 * statistics are filled from two edit examples first (an edit needs them).
 */
import { spawn } from "child_process";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { describeBackend, initBackend } from "../model/backend";
import { countParams, disposeParams } from "../model/gpt";
import { BpeTokenizer, gpt2TokenizerFiles } from "../model/bpeTokenizer";
import { Gpt2Shape, randomGpt2 } from "../model/randomGpt2";
import { captureEditorFactors, mendEdit, updateEditorStats } from "../mend/edit";
import { disposeFactors } from "../mend/factor";
import { disposeBatch, makeBatch } from "../model/batch";
import { createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor, editorVariables, lastBlocksMlp } from "../mend/editor";
import { metaBatchGrads } from "../mend/metaLoss";
import { MetaExample } from "../mend/metaExamples";
import { DEFAULT_TRAIN_EDITOR_CONFIG } from "../mend/train";
import { PACKAGE_ROOT } from "./common";
import { leanAdam } from "../model/leanAdam";
import { editAndApply, gradsOf, timeIt } from "./timing";

export const SCALE_STAGES = ["edit", "forward-backward", "meta-step"] as const;
export type ScaleStage = (typeof SCALE_STAGES)[number];

/** One stage's figure: median ms (null when it failed), its process's peak RSS, why it failed. */
export interface ScaleStageResult {
  ms: number | null;
  peakRssMb: number | null;
  failure?: string;
}

export interface ScaleBenchResult {
  /** `describeBackend` of the stage processes (backend, wasm threads). */
  backend: string;
  shape: Gpt2Shape;
  params: number;
  editorParams: number;
  rank: number;
  stages: Record<ScaleStage, ScaleStageResult>;
  /** The largest peak RSS of the stages. */
  peakRssMb: number;
}

/** What one stage process prints (--stage S --json). */
interface StageReport {
  backend: string;
  params: number;
  editorParams: number;
  rank: number;
  ms: number;
  peakRssMb: number;
}

/**
 * The meta-training example: GPT-2 BPE lengths close to those of the PyTorch MEND it is compared with (docs/benchmarks.md: an edit
 * of a 12-token prompt + 2 target tokens and three 14-token locality texts): edit 14 + 2, equivalent
 * 11 + 2, three locality texts of 13-14 + 1 tokens.
 */
const EXAMPLE: MetaExample = {
  editInner: { prompt: "After the election of 2020, the new president of the United States is", target: "Joe Biden" },
  editOuter: { prompt: "Since January 2021 the president of the United States has been", target: "Joe Biden" },
  loc: { prompt: "The capital of France is a city on the river Seine called", target: "Paris" },
  locClass: "unrelated",
  extraLoc: [
    { prompt: "The largest planet in the solar system, a gas giant, is named", target: "Jupiter" },
    { prompt: "The author of the play Hamlet, written around 1600, was William", target: "Shakespeare" },
  ],
};

/** Run one stage in this process. Throws when it does not fit (a wasm abort ends the backend). */
export async function runScaleStage(opts: { shape: Gpt2Shape; stage: ScaleStage; reps?: number; rank?: number; log?: (s: string) => void }): Promise<StageReport> {
  const backend = await initBackend();
  const log = opts.log ?? (() => {});
  const reps = opts.reps ?? 3;
  const files = gpt2TokenizerFiles();
  const { config, params } = randomGpt2({ shape: opts.shape, seed: 0 });
  const model = { config, params, tokenizer: BpeTokenizer.fromFiles(files["vocab.json"], files["merges.txt"]) };
  const inner = lastBlocksMlp(config.n_layer);
  const editor = createEditor({ ...DEFAULT_EDITOR_CONFIG, innerParams: inner, rank: opts.rank ?? 1920 }, Object.fromEntries(inner.map((n) => [n, params[n].shape])), 0);
  const { net, editLrs } = editorVariables(editor);
  const report = (ms: number): StageReport => ({
    backend: describeBackend(backend),
    params: countParams(params),
    editorParams: Object.values(net).reduce((a, v) => a + v.size, 0),
    rank: editor.config.rank,
    ms,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  });
  try {
    log(`${opts.shape} ${opts.stage} (${describeBackend(backend)}) ...`);
    if (opts.stage === "forward-backward") {
      const ids = tf.randomUniform([8, 16], 0, config.vocab_size, "int32", 1) as tf.Tensor2D;
      const labels = tf.randomUniform([8, 16], 0, config.vocab_size, "int32", 2) as tf.Tensor2D;
      const batch = { inputIds: ids, attentionMask: tf.ones([8, 16]) as tf.Tensor2D, labels };
      const names = Object.keys(params).filter((n) => n !== "wte.weight");
      const ms = await timeIt(() => gradsOf(model, batch, names), reps, 1);
      disposeBatch(batch);
      return report(ms);
    }
    for (const ex of [EXAMPLE.editInner, EXAMPLE.editOuter]) {
      const b = makeBatch(model.tokenizer, [ex], "target", config.n_positions);
      const factors = captureEditorFactors(params, config, b, editor);
      updateEditorStats(editor, factors);
      disposeFactors(factors);
      disposeBatch(b);
    }
    if (opts.stage === "edit") {
      const ms = await timeIt(() => editAndApply(model, () => mendEdit(model, editor, [EXAMPLE.editInner]), inner[0]), Math.max(reps, 5), 1);
      return report(ms);
    }
    const vars = { ...net, ...editLrs };
    const opt = leanAdam(1e-6, 0.9, 0.999, 1e-8); // as trainEditor
    const ms = await timeIt(async () => {
      const { grads } = metaBatchGrads(model, editor, [[EXAMPLE]], vars, DEFAULT_TRAIN_EDITOR_CONFIG, true);
      if (grads) {
        opt.applyGradients(Object.entries(grads).map(([n, t]) => ({ name: vars[n].name, tensor: t })));
        await Object.values(grads)[0].data();
        tf.dispose(Object.values(grads));
      }
    }, reps, 1);
    opt.dispose();
    return report(ms);
  } finally {
    try {
      disposeEditor(editor);
      disposeParams(params);
    } catch {
      // the backend was lost to an out-of-memory abort: nothing left to free
    }
  }
}

/** A stage in a child process (`mend bench --shape S --stage X --json`); its failure is a result. */
function stageInChild(opts: { shape: Gpt2Shape; stage: ScaleStage; reps?: number; rank?: number; timeoutMs: number }): Promise<StageReport | { failure: string; peakRssMb: number | null }> {
  const args = [path.join(PACKAGE_ROOT, "bin", "mend.js"), "bench", "--shape", opts.shape, "--stage", opts.stage, "--json"];
  if (opts.reps !== undefined) args.push("--reps", String(opts.reps));
  if (opts.rank !== undefined) args.push("--rank", String(opts.rank));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => {
      err += d;
      process.stderr.write(d);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        try {
          return resolve(JSON.parse(out) as StageReport);
        } catch {
          return resolve({ failure: `the stage printed no result (stdout: ${out.trim().slice(0, 200) || "empty"})`, peakRssMb: null });
        }
      }
      const last = err.trim().split("\n").filter((l) => /abort|memory|error/i.test(l)).pop() ?? err.trim().split("\n").pop() ?? "";
      const why = signal === "SIGKILL" ? `no result within ${Math.round(opts.timeoutMs / 1000)} s (killed)` : `exit ${code}: ${last.slice(0, 200)}`;
      resolve({ failure: `${why} (a wasm stage that does not fit in its 4 GB aborts)`, peakRssMb: null });
    });
  });
}

/** Every stage, each in its own process, one after the other (so they do not share the cores). */
export async function runScaleBench(opts: { shape: Gpt2Shape; reps?: number; rank?: number; log?: (s: string) => void; stageTimeoutMs?: number }): Promise<ScaleBenchResult> {
  const log = opts.log ?? (() => {});
  const stages = {} as Record<ScaleStage, ScaleStageResult>;
  let info: StageReport | null = null;
  for (const stage of SCALE_STAGES) {
    const r = await stageInChild({ shape: opts.shape, stage, reps: opts.reps, rank: opts.rank, timeoutMs: opts.stageTimeoutMs ?? 20 * 60_000 });
    if ("failure" in r) {
      stages[stage] = { ms: null, peakRssMb: null, failure: r.failure };
      log(`  ${stage} failed: ${r.failure}`);
    } else {
      info = r;
      stages[stage] = { ms: r.ms, peakRssMb: r.peakRssMb };
      log(`  ${stage}: ${r.ms.toFixed(0)} ms, peak RSS ${r.peakRssMb.toFixed(0)} MB`);
    }
  }
  if (!info) throw new Error(`mend bench --shape ${opts.shape}: every stage failed (${stages.edit.failure})`);
  const rss = Object.values(stages).map((s) => s.peakRssMb ?? 0);
  return { backend: info.backend, shape: opts.shape, params: info.params, editorParams: info.editorParams, rank: info.rank, stages, peakRssMb: Math.max(...rss) };
}

/**
 * The result as text. Ratios against another implementation are measured in one run, alternating
 * the two on the same machine (docs/benchmarks.md), never against figures from elsewhere.
 */
export function formatScaleBench(r: ScaleBenchResult): string {
  const row = (name: string, s: ScaleStageResult) =>
    s.ms === null ? `  ${name.padEnd(44)} failed: ${s.failure}` : `  ${name.padEnd(44)} ${s.ms.toFixed(0).padStart(7)} ms   (peak RSS ${(s.peakRssMb ?? 0).toFixed(0)} MB)`;
  return [
    `${r.shape}: ${(r.params / 1e6).toFixed(1)}M parameters, editor rank ${r.rank} (${(r.editorParams / 1e6).toFixed(1)}M parameters); backend ${r.backend}`,
    row("MEND edit", r.stages.edit),
    row("forward+backward, 8 x 16 tokens", r.stages["forward-backward"]),
    row("meta-training step (1 example, 3 locality texts)", r.stages["meta-step"]),
    `  peak RSS ${r.peakRssMb.toFixed(0)} MB (the largest stage)`,
  ].join("\n");
}
