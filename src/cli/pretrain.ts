/** `mend pretrain`: pretrain the base GPT-2 on the facts world. */
import * as path from "path";
import { describeBackend, initBackend } from "../model/backend";
import { DEFAULT_GPT2_CONFIG, GPT2Config } from "../model/config";
import { disposeParams } from "../model/gpt";
import { loadModel, saveModel } from "../model/modelFolder";
import { DEFAULT_PRETRAIN_CONFIG, pretrain } from "../world/pretrain";
import { World } from "../world/world";
import { FORCE_FLAG, guardOutput, newRunDir, RESUME_FLAG } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";
import { ProgressBar } from "./progress";

const d = DEFAULT_PRETRAIN_CONFIG;
export const spec: CommandSpec = {
  name: "pretrain",
  summary: "pretrain the base GPT-2 on the facts world (stops when every fact is right in every template)",
  flags: [
    { name: "out", type: "string", value: "DIR", help: "where the best model goes", default: "RUN-DIR/model" },
    { name: "run-dir", type: "string", value: "DIR", help: "checkpoints of the run (best, last with optimizer state)", default: "a new runs/pretrain-<time>" },
    FORCE_FLAG,
    { name: "steps", type: "int", value: "N", help: "upper bound on optimizer steps", default: d.maxSteps, min: 1 },
    { name: "seed", type: "int", value: "S", help: "seed of the initialisation and data order", default: 0, min: 0 },
    { name: "time-budget", type: "number", value: "SEC", help: "stop at the next evaluation after this many seconds", default: d.timeBudgetSec, above: 0 },
    RESUME_FLAG,
    { name: "n-embd", type: "int", value: "D", help: "model width", default: DEFAULT_GPT2_CONFIG.n_embd, min: 1, advanced: true },
    { name: "n-layer", type: "int", value: "L", help: "blocks", default: DEFAULT_GPT2_CONFIG.n_layer, min: 1, advanced: true },
    { name: "n-head", type: "int", value: "H", help: "attention heads (must divide --n-embd)", default: DEFAULT_GPT2_CONFIG.n_head, min: 1, advanced: true },
  ],
};

export async function run(f: Flags): Promise<void> {
  const size: Partial<GPT2Config> = {};
  for (const [flag, key] of [["n-embd", "n_embd"], ["n-layer", "n_layer"], ["n-head", "n_head"]] as const) {
    const v = flagNumber(f, flag);
    if (v !== undefined) size[key] = v;
  }
  const resume = flagBool(f, "resume");
  if (Object.keys(size).length && resume) throw new Error("--n-embd/--n-layer/--n-head cannot be combined with --resume (a resumed run keeps its model size)");
  if (resume && f.seed !== undefined) throw new Error("--seed cannot be combined with --resume (a resumed run keeps its seed and data order)");
  if (resume && !flagString(f, "run-dir")) throw new Error("--resume needs --run-dir DIR: the run to continue");
  const { n_embd, n_head } = { ...DEFAULT_GPT2_CONFIG, ...size };
  if (n_embd % n_head !== 0) throw new Error(`--n-embd (${n_embd}) must be divisible by --n-head (${n_head})`);
  const backend = await initBackend();
  console.error(`backend: ${describeBackend(backend)}`);
  const runDir = flagString(f, "run-dir") ?? newRunDir("pretrain");
  const out = flagString(f, "out") ?? path.join(runDir, "model");
  const ownOutput = flagBool(f, "force") || (resume && !flagString(f, "out")); // a resumed run may replace its own output
  guardOutput(out, "model", { force: ownOutput });
  console.error(`run folder: ${runDir}; the best model goes to ${out}`);
  const cfg = { ...d, maxSteps: flagNumber(f, "steps") ?? d.maxSteps, seed: flagNumber(f, "seed") ?? 0, timeBudgetSec: flagNumber(f, "time-budget") ?? d.timeBudgetSec, model: size };
  const bar = new ProgressBar(cfg.maxSteps, "pretrain");
  let r;
  try {
    r = await pretrain(World.load(), runDir, cfg, {
      resume,
      resumeWith: { ...(f.steps !== undefined ? { maxSteps: cfg.maxSteps } : {}), ...(f["time-budget"] !== undefined ? { timeBudgetSec: cfg.timeBudgetSec } : {}) },
      onProgress: (p) => bar.update(p.step, { loss: p.loss, "acc(train tpl)": p.lastAccuracy.byGroup.train, "acc(held-out tpl)": p.lastAccuracy.byGroup.heldout, lr: p.lr }, p.accuracy !== undefined),
    });
  } finally {
    bar.done();
  }
  const best = loadModel(r.bestDir);
  saveModel(out, best, { steps: String(r.steps), fact_accuracy: String(r.accuracy.overall), seed: String(cfg.seed) }, { check: () => guardOutput(out, "model", { force: ownOutput }) });
  disposeParams(best.params);
  console.log(JSON.stringify({ out, run_dir: runDir, steps: r.steps, steps_run: r.stepsRun, elapsed_sec: r.elapsedSec, accuracy: r.accuracy }, null, 1));
}
