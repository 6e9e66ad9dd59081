/**
 * Pretraining the base GPT-2 on the facts world: language-model loss on every fact in every
 * template, seeded Adam with warmup + cosine decay, fact accuracy evaluated periodically, best and
 * last checkpoints, resumable (weights, optimizer slots, step and data-order RNG).
 *
 * Fact accuracy = teacher-forced exact match of the object tokens after the prompt, over all facts
 * and all templates, reported separately for the training and held-out template groups.
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { makeBatch, disposeBatch } from "../model/batch";
import { DEFAULT_GPT2_CONFIG, GPT2Config, validateConfig } from "../model/config";
import { gptForward, initGPT, Params } from "../model/gpt";
import { meanNll } from "../model/loss";
import { loadOptimizerState, optimizerStateBytes } from "../model/optimizerState";
import { loadModel, modelFiles, saveModel } from "../model/modelFolder";
import { ModelView, ParamsModel } from "../model/paramsModel";
import type { LanguageModel } from "../model/languageModel";
import { lockRunFolder, recoverForRead, writeFolder } from "../model/checkpointFolder";
import { Rng } from "../model/rng";
import { scoreTargets } from "../model/score";
import { WordTokenizer } from "../model/wordTokenizer";
import { TemplateGroup, World } from "./world";
import { checkedFields, field, fieldError, readJsonFile } from "../model/jsonFile";

export interface PretrainConfig {
  seed: number;
  /** Upper bound on optimizer steps. */
  maxSteps: number;
  batchSize: number;
  lr: number;
  warmupSteps: number;
  /** Evaluate fact accuracy (and checkpoint) every this many steps. */
  evalEvery: number;
  /** Stop once every fact is right in every template group at least this often (1 = all). */
  stopAccuracy: number;
  /** Wall-clock budget in seconds (stops after the next evaluation once exceeded). */
  timeBudgetSec: number;
  model: Partial<GPT2Config>;
}

export const DEFAULT_PRETRAIN_CONFIG: Readonly<PretrainConfig> = Object.freeze({
  seed: 0,
  maxSteps: 1500,
  batchSize: 64,
  lr: 3e-3,
  warmupSteps: 100,
  evalEvery: 100,
  stopAccuracy: 1.0,
  timeBudgetSec: 900,
  model: {},
});

export interface FactAccuracy {
  overall: number;
  byGroup: Record<TemplateGroup, number>;
  n: number;
}

/** Fact accuracy of a model over the world's whole corpus, or over the first `templatesPerGroup` templates of each fact and template group (a faster sample). */
export function factAccuracy(m: LanguageModel, world: World, opts: { templatesPerGroup?: number } = {}): FactAccuracy {
  const k = opts.templatesPerGroup;
  if (k !== undefined && !(Number.isSafeInteger(k) && k >= 1)) throw new Error(`factAccuracy: templatesPerGroup must be a positive integer, got ${k}`);
  const seen = new Map<string, number>();
  const corpus = k === undefined ? world.corpus() : world.corpus().filter((c) => {
    const key = `${c.fact.subject}|${c.fact.relation}|${c.group}`;
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    return n < k;
  });
  const scores = scoreTargets(m, corpus.map((c) => ({ prompt: c.prompt, target: c.object })), 256);
  const by: Record<TemplateGroup, [number, number]> = { train: [0, 0], heldout: [0, 0] };
  scores.forEach((s, i) => {
    const g = by[corpus[i].group];
    g[0] += s.exact ? 1 : 0;
    g[1] += 1;
  });
  const hit = by.train[0] + by.heldout[0];
  return { overall: hit / corpus.length, byGroup: { train: by.train[0] / by.train[1], heldout: by.heldout[0] / by.heldout[1] }, n: corpus.length };
}

export interface PretrainProgress {
  step: number;
  maxSteps: number;
  /** Running mean of the training loss. */
  loss: number;
  lr: number;
  /** Fact accuracy, on the steps it was measured. */
  accuracy?: FactAccuracy;
  /** The latest measured fact accuracy. */
  lastAccuracy: FactAccuracy;
  elapsedSec: number;
}

interface TrainerState {
  step: number;
  rngState: number;
  epochOrder: number[];
  epochPos: number;
  best: number;
  elapsedSec: number;
  config: PretrainConfig;
}

let runCounter = 0;

/**
 * Pretrain a base model on `world`. Writes `runDir/last` (model + optimizer + trainer state, for
 * `resume`) and `runDir/best`; returns the best model's folder and its accuracy.
 */
export async function pretrain(
  world: World,
  runDir: string,
  cfg: PretrainConfig = DEFAULT_PRETRAIN_CONFIG,
  opts: {
    resume?: boolean;
    onProgress?: (p: PretrainProgress) => void;
    /** With `resume`: settings that may change when a run continues (a larger maxSteps trains on). */
    resumeWith?: Partial<Pick<PretrainConfig, "maxSteps" | "timeBudgetSec">>;
  } = {},
): Promise<{ bestDir: string; accuracy: FactAccuracy; steps: number; stepsRun: number; elapsedSec: number }> {
  const release = lockRunFolder(runDir); // for the whole run: a second run on the folder is refused
  try {
    return await pretrainLocked(world, runDir, cfg, opts);
  } finally {
    release();
  }
}

async function pretrainLocked(world: World, runDir: string, cfg: PretrainConfig, opts: NonNullable<Parameters<typeof pretrain>[3]>): Promise<Awaited<ReturnType<typeof pretrain>>> {
  const lastDir = path.join(runDir, "last");
  const bestDir = path.join(runDir, "best");
  const statePath = path.join(lastDir, "trainer_state.json");
  const corpus = world.corpus().map((c) => ({ prompt: c.prompt, target: c.object }));

  let model: ModelView;
  let st: TrainerState;
  const rng = new Rng(cfg.seed);
  if (opts.resume) recoverForRead(lastDir);
  if (opts.resume && !fs.existsSync(statePath)) throw new Error(`nothing to resume: ${statePath} not found (start a new run without --resume, or name the run folder)`);
  if (opts.resume) {
    st = checkedFields<TrainerState>(readJsonFile(statePath), statePath, { step: field.count, rngState: field.integer, epochOrder: field.list, epochPos: field.count, best: field.number, elapsedSec: field.number, config: field.object });
    if (!st.epochOrder.every((i) => Number.isSafeInteger(i) && i >= 0)) throw fieldError(statePath, "epochOrder", "a list of example indices", st.epochOrder);
    model = loadModel(lastDir);
    cfg = { ...st.config, ...(opts.resumeWith ?? {}) };
    st.config = cfg;
    rng.state = st.rngState;
  } else {
    const tokenizer = WordTokenizer.fromTexts(world.texts());
    const config = validateConfig({ ...DEFAULT_GPT2_CONFIG, ...cfg.model, vocab_size: tokenizer.size });
    model = { config, tokenizer, params: initGPT(config, cfg.seed) };
    st = { step: 0, rngState: rng.state, epochOrder: [], epochPos: 0, best: -1, elapsedSec: 0, config: cfg };
  }
  const { config, tokenizer } = model;
  const names = Object.keys(model.params);
  const run = `pretrain${runCounter++}`;
  const vars: Record<string, tf.Variable> = {};
  for (const n of names) {
    vars[n] = tf.variable(model.params[n], true, `${run}/${n}`);
    model.params[n].dispose();
  }
  const params = vars as unknown as Params;
  const view = new ParamsModel(config, params, tokenizer); // owns nothing: the variables are freed below
  const opt = tf.train.adam(cfg.lr, 0.9, 0.98, 1e-8);
  if (opts.resume) await loadOptimizerState(path.join(lastDir, "optimizer.safetensors"), opt);

  const t0 = Date.now() - st.elapsedSec * 1000;
  const startStep = st.step;
  let lastAcc: FactAccuracy = { overall: 0, byGroup: { train: 0, heldout: 0 }, n: corpus.length };
  let lossEma = NaN;
  const nextBatch = () => {
    const rows: typeof corpus = [];
    while (rows.length < cfg.batchSize) {
      if (st.epochPos >= st.epochOrder.length) {
        st.epochOrder = rng.shuffle(corpus.map((_, i) => i));
        st.epochPos = 0;
      }
      rows.push(corpus[st.epochOrder[st.epochPos++]]);
    }
    return makeBatch(tokenizer, rows, "all", config.n_positions);
  };

  try {
    while (st.step < cfg.maxSteps) {
      const lr = cfg.lr * Math.min(1, (st.step + 1) / cfg.warmupSteps) * (0.55 + 0.45 * Math.cos((Math.PI * st.step) / cfg.maxSteps));
      (opt as unknown as { learningRate: number }).learningRate = lr;
      const b = nextBatch();
      const lossT = opt.minimize(() => meanNll(gptForward(params, config, b.inputIds, { attentionMask: b.attentionMask }).logits, b.labels), true, names.map((n) => vars[n]));
      disposeBatch(b);
      const loss = (await lossT!.data())[0];
      lossT!.dispose();
      if (!Number.isFinite(loss)) throw new Error(`pretraining diverged: the loss is ${loss} at step ${st.step + 1}; the last good checkpoint is in ${lastDir}. Lower the lr and start again`);
      lossEma = Number.isNaN(lossEma) ? loss : 0.9 * lossEma + 0.1 * loss;
      st.step++;
      const elapsed = (Date.now() - t0) / 1000;
      const evalNow = st.step % cfg.evalEvery === 0 || st.step === cfg.maxSteps;
      if (evalNow) {
        lastAcc = factAccuracy(view, world);
        const score = Math.min(lastAcc.byGroup.train, lastAcc.byGroup.heldout);
        st.rngState = rng.state;
        st.elapsedSec = elapsed;
        if (score > st.best) {
          st.best = score;
          saveModel(bestDir, view, { step: String(st.step), fact_accuracy: String(lastAcc.overall) });
        }
        // The resume point as one unit: weights, optimizer slots and trainer state of the same step.
        writeFolder(lastDir, "pretrain-run", { ...modelFiles(view, { step: String(st.step) }), "optimizer.safetensors": await optimizerStateBytes(opt), "trainer_state.json": JSON.stringify(st) });
      }
      const p: PretrainProgress = { step: st.step, maxSteps: cfg.maxSteps, loss: lossEma, lr, accuracy: evalNow ? lastAcc : undefined, lastAccuracy: lastAcc, elapsedSec: elapsed };
      opts.onProgress?.(p);
      await new Promise((r) => setImmediate(r)); // let notebook displays and progress output draw
      if (evalNow && (Math.min(lastAcc.byGroup.train, lastAcc.byGroup.heldout) >= cfg.stopAccuracy || elapsed > cfg.timeBudgetSec)) break;
    }
  } finally {
    opt.dispose();
    for (const v of Object.values(vars)) v.dispose();
  }
  const best = loadModel(bestDir);
  const accuracy = factAccuracy(best, world);
  for (const t of Object.values(best.params)) t.dispose();
  return { bestDir, accuracy, steps: st.step, stepsRun: st.step - startStep, elapsedSec: (Date.now() - t0) / 1000 };
}
