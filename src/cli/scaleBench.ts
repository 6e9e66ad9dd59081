/**
 * `mend bench --shape gpt2|gpt2-medium|...`: what MEND costs at a real GPT-2 shape, on random
 * weights (nothing downloaded; the cost of the arithmetic does not depend on the values):
 *
 *  - forward+backward of every parameter on 8 x 16 tokens (the mean NLL of random token ids; gradsOf);
 *  - a MEND edit (one request, official editor: rank 1920, last three blocks' mlp.c_fc/c_proj);
 *  - one meta-training step on one (edit, equivalent, locality) example, with the Adam step;
 *  - peak RSS of the process (run one shape per process).
 * The editor's statistics are filled from two edit examples first (an edit needs them). The
 * meta-training step runs last: at rank 1920 it may not fit in wasm's 4 GB (reported, not fatal).
 */
import * as tf from "@tensorflow/tfjs";
import { describeBackend, initBackend } from "../model/backend";
import { countParams, disposeParams } from "../model/gpt";
import { BpeTokenizer, gpt2TokenizerFiles } from "../model/bpeTokenizer";
import { Gpt2Shape, randomGpt2 } from "../model/randomGpt2";
import { captureEditorFactors, disposeEdit, mendEdit, updateEditorStats } from "../mend/edit";
import { disposeFactors } from "../mend/factor";
import { disposeBatch, makeBatch } from "../world/batch";
import { createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor, editorVariables, lastBlocksMlp } from "../mend/editor";
import { metaBatchGrads } from "../mend/metaLoss";
import { MetaExample } from "../mend/metaExamples";
import { DEFAULT_TRAIN_EDITOR_CONFIG } from "../mend/train";
import { gradsOf, timeIt } from "./timing";

export interface ScaleBenchResult {
  backend: string;
  shape: Gpt2Shape;
  params: number;
  editorParams: number;
  rank: number;
  forwardBackward8x16Ms: number | null;
  editMs: number;
  /** null when it did not fit in the backend's memory (`failures` says so). */
  trainStepMs: number | null;
  failures?: Record<string, string>;
  /** Peak RSS after meta-training steps and edits (before the all-parameter forward+backward). */
  editingRssMb: number;
  peakRssMb: number;
}

const EXAMPLE: MetaExample = {
  editInner: { prompt: "The president of the United States is", target: "Joe Biden" },
  editOuter: { prompt: "The current US president is", target: "Joe Biden" },
  loc: { prompt: "The capital of France is", target: "Paris" },
  locClass: "unrelated",
};


export async function runScaleBench(opts: { shape: Gpt2Shape; reps?: number; rank?: number; log?: (s: string) => void }): Promise<ScaleBenchResult> {
  const backend = await initBackend();
  const log = opts.log ?? (() => {});
  log(`backend: ${describeBackend(backend)}`);
  const reps = opts.reps ?? 3;
  const files = gpt2TokenizerFiles();
  const { config, params } = randomGpt2({ shape: opts.shape, seed: 0 });
  const model = { config, params, tokenizer: BpeTokenizer.fromFiles(files["vocab.json"], files["merges.txt"]) };
  const inner = lastBlocksMlp(config.n_layer);
  const editor = createEditor({ ...DEFAULT_EDITOR_CONFIG, innerParams: inner, rank: opts.rank ?? 1920 }, Object.fromEntries(inner.map((n) => [n, params[n].shape])), 0);
  try {
    log(`${opts.shape}: ${(countParams(params) / 1e6).toFixed(0)}M parameters; editor rank ${editor.config.rank}; MEND edit ...`);
    // An edit needs the editor's input statistics: fill them from two edit examples (as training would).
    for (const ex of [EXAMPLE.editInner, EXAMPLE.editOuter]) {
      const b = makeBatch(model.tokenizer, [ex], "target", config.n_positions);
      const factors = captureEditorFactors(params, config, b, editor);
      updateEditorStats(editor, factors);
      disposeFactors(factors);
      disposeBatch(b);
    }
    const editMs = await timeIt(async () => {
      const r = mendEdit(model, editor, [EXAMPLE.editInner]);
      await r.edited[inner[0]].data();
      disposeEdit(r);
    }, Math.max(reps, 5), 1);
    const editingRssMb = process.resourceUsage().maxRSS / 1024;
    // What may not fit in the backend's memory is measured last and reported, not fatal (a wasm
    // abort ends the backend, so nothing runs after a failure).
    const failures: Record<string, string> = {};
    const attempt = async (what: string, fn: () => Promise<number>): Promise<number | null> => {
      if (Object.keys(failures).length) return null;
      try {
        return await fn();
      } catch (e) {
        failures[what] = `${(e as Error).message.split(".")[0]} (the ${backend.kind} backend ran out of memory)`;
        log(`  ${what} failed: ${failures[what]}`);
        return null;
      }
    };
    const { net, editLrs } = editorVariables(editor);
    const editorParams = Object.values(net).reduce((a, v) => a + v.size, 0);
    log(`  ${editMs.toFixed(0)} ms; one meta-training step ...`);
    const trainMs = await attempt("meta-training step", async () => {
      const vars = { ...net, ...editLrs };
      const opt = tf.train.adam(1e-6, 0.9, 0.999, 1e-8);
      const step = async () => {
        const { grads } = metaBatchGrads(model, editor, [[EXAMPLE]], vars, DEFAULT_TRAIN_EDITOR_CONFIG, true);
        if (grads) {
          opt.applyGradients(Object.entries(grads).map(([n, t]) => ({ name: vars[n].name, tensor: t })));
          await Object.values(grads)[0].data();
          tf.dispose(Object.values(grads));
        }
      };
      const ms = await timeIt(step, reps, 1);
      opt.dispose();
      log(`  ${ms.toFixed(0)} ms; forward+backward on 8 x 16 tokens ...`);
      return ms;
    });
    const fb = await attempt("forward+backward", async () => {
      const ids = tf.randomUniform([8, 16], 0, config.vocab_size, "int32", 1) as tf.Tensor2D;
      const labels = tf.randomUniform([8, 16], 0, config.vocab_size, "int32", 2) as tf.Tensor2D;
      const batch = { inputIds: ids, attentionMask: tf.ones([8, 16]) as tf.Tensor2D, labels };
      const ms = await timeIt(() => gradsOf(model, batch, Object.keys(params)), reps, 1);
      disposeBatch(batch);
      log(`  ${ms.toFixed(0)} ms`);
      return ms;
    });
    return {
      backend: backend.kind,
      shape: opts.shape,
      params: countParams(params),
      editorParams,
      rank: editor.config.rank,
      forwardBackward8x16Ms: fb,
      editMs,
      trainStepMs: trainMs,
      ...(Object.keys(failures).length ? { failures } : {}),
      editingRssMb,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    try {
      disposeEditor(editor);
      disposeParams(params);
    } catch {
      // the backend was lost to an out-of-memory abort: nothing left to free
    }
  }
}

/** The PyTorch 1.13 CPU (2 threads) figures for the GPT-2-small shape on this machine type (the reference of the speed goal). */
export const PYTORCH_GPT2_SMALL = { editMs: 241, trainStepMs: 3500, forwardBackward8x16Ms: 3300, peakRssMb: 3000 };

export function formatScaleBench(r: ScaleBenchResult): string {
  const ref = r.shape === "gpt2" ? PYTORCH_GPT2_SMALL : null;
  const row = (name: string, ms: number, refMs?: number) => `  ${name.padEnd(34)} ${ms.toFixed(0).padStart(7)} ms${refMs ? `   ${(ms / refMs).toFixed(2)}x PyTorch's ${refMs} ms` : ""}`;
  return [
    `${r.shape}: ${(r.params / 1e6).toFixed(1)}M parameters, editor rank ${r.rank} (${(r.editorParams / 1e6).toFixed(1)}M parameters); backend ${r.backend}`,
    r.forwardBackward8x16Ms === null ? `  forward+backward, 8 x 16 tokens    not run or failed` : row("forward+backward, 8 x 16 tokens", r.forwardBackward8x16Ms, ref?.forwardBackward8x16Ms),
    ...Object.entries(r.failures ?? {}).map(([k, v]) => `  ${k}: ${v}`),
    row("MEND edit", r.editMs, ref?.editMs),
    r.trainStepMs === null ? `  meta-training step (1 example)     not run or failed` : row("meta-training step (1 example)", r.trainStepMs, ref?.trainStepMs),
    `  peak RSS ${r.peakRssMb.toFixed(0)} MB${ref ? `   ${(r.peakRssMb / ref.peakRssMb).toFixed(2)}x PyTorch's ${ref.peakRssMb} MB` : ""} (${r.editingRssMb.toFixed(0)} MB before the all-parameter forward+backward)`,
  ].join("\n");
}
