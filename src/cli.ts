/**
 * The `mend` command line. Every command picks the backend first (MEND_BACKEND overrides),
 * prints human-readable output, or one JSON object with --json.
 */
import * as fs from "fs";
import * as path from "path";
import { describeBackend, initBackend } from "./backend";
import { DEFAULT_CALIBRATION, validateCalibration } from "./calibrate";
import { DEFAULT_GPT2_CONFIG, GPT2Config } from "./config";
import { disposeEdit, EditRequest, mendEdit, validateRequests } from "./edit";
import { disposeEditor } from "./editor";
import { loadEditor } from "./editorIO";
import { disposeParams } from "./gpt";
import { loadModel, saveModel } from "./params";
import { DEFAULT_PRETRAIN_CONFIG, pretrain } from "./pretrain";
import { formatProbeTable, probesFor, runProbes } from "./report";
import { writeFileAtomic } from "./safetensors";
import { nextTokenTopK } from "./score";
import { DEFAULT_TRAIN_EDITOR_CONFIG, trainEditor } from "./trainEditor";
import { World } from "./world";

export const PACKAGE_ROOT = path.join(__dirname, "..");
export const DEFAULT_MODEL_DIR = path.join(PACKAGE_ROOT, "checkpoints", "base");
export const DEFAULT_EDITOR_DIR = path.join(PACKAGE_ROOT, "checkpoints", "editor");
/** The editor trained for batched edits (second stage, k in {1, 5, 25}, batchLoss "sum"); see README. */
export const DEFAULT_BATCH_EDITOR_DIR = path.join(PACKAGE_ROOT, "checkpoints", "editor-batch");

export interface Args {
  _: string[];
  flags: Record<string, string[]>;
}

/** `--key value`, `--key=value`, bare `--flag` (value "true"); repeated keys accumulate. */
export function parseArgs(argv: readonly string[], booleans: readonly string[] = []): Args {
  const a: Args = { _: [], flags: {} };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (!s.startsWith("--")) {
      a._.push(s);
      continue;
    }
    let key = s.slice(2);
    let val: string;
    if (key.includes("=")) [key, val] = [key.slice(0, key.indexOf("=")), key.slice(key.indexOf("=") + 1)];
    else if (booleans.includes(key) || i + 1 >= argv.length || argv[i + 1].startsWith("--")) val = "true";
    else val = argv[++i];
    (a.flags[key] ??= []).push(val);
  }
  return a;
}

const str = (a: Args, k: string, d?: string) => a.flags[k]?.[a.flags[k].length - 1] ?? d;
export const num = (a: Args, k: string, d: number) => {
  const v = str(a, k);
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${k} must be a number, got "${v}"`);
  return n;
};
const bool = (a: Args, k: string) => str(a, k) === "true";

export function checkFlags(a: Args, allowed: string[]): void {
  const bad = Object.keys(a.flags).filter((k) => !allowed.includes(k));
  if (bad.length) throw new Error(`unknown option${bad.length > 1 ? "s" : ""} ${bad.map((b) => "--" + b).join(", ")}; expected ${allowed.map((k) => "--" + k).join(", ")}`);
}

const USAGE = `mend: MEND (Model Editor Networks with Gradient Decomposition) on TensorFlow.js

  mend predict --prompt TEXT [--model DIR] [--top K] [--json]
  mend edit --prompt TEXT --target TEXT [--probe TEXT ...] [--model DIR] [--editor DIR] [--save DIR] [--json]
            [--calibrate MARGIN]                scale the step to MARGIN x the smallest one that makes the edit right (ours; 1.3)
  mend edit --requests FILE.json [...]          FILE: [{"prompt": ..., "target": ...}, ...]
  mend pretrain [--out DIR] [--run-dir DIR] [--steps N] [--seed S] [--resume] [--time-budget SEC]
                [--n-embd D] [--n-layer L] [--n-head H]   model size (default 128, 4, 4: the shipped base)
  mend train-editor [--model DIR] [--out DIR] [--run-dir DIR] [--steps N] [--seed S] [--resume] [--inner-params A,B,...]
                    [--n-edits 1,5,25] [--init EDITOR_DIR] [--accumulate N] [--outer-is-edit P] [--per-fact N] [--batch-loss mean|sum] [--weighting call|edit]
                    [--patience STEPS] [--c-loc C] [--loc-per-edit N] [--rank R] [--rows all|target] [--same-answer-loc P] [--key-precond LAMBDA] [--batch-precond BETA]
                    [--calibrated-step MARGIN]          meta-train at the calibrated step (ours; edit with --calibrate MARGIN)
                    [--preserve BETA]                   meta-train with edit-time preservation active (ours; preserve.ts)
                    (edits per example; start from an editor; examples per step; P(x'_e = x_e);
                     new targets per training fact, default 20; loss of a k-request edit, default mean = official;
                     meta-loss average over calls or over edits)
  mend eval [--json] [--methods MEND,MEND-cal,MEND-batch,FT,FT+KL] [--batch-sizes 1,5,25,75,125] [--sequential N] [--out DIR] [--limit N] [--split test|val]
            [--batch-editor DIR]                MEND-batch: the editor trained for batched edits (checkpoints/editor-batch)
            [--calibrate MARGIN]                MEND-cal: MEND with edit-time step calibration at this margin (default 1.3)
            [--ft-lr LR] [--ft-optimizer rmsprop|adam]  FT and FT+KL: lr and optimiser (default RMSprop 4e-4)
  mend demo [--out DIR]                         President -> Biden with MEND, MEND-cal, FT and FT+KL (npm start)
  mend world [--out DIR]                        write the generated corpus and edit records
  mend bench [--json]                           throughput and latency, ratios from one run

Backend: tfjs-node-gpu, tfjs-node, wasm, cpu (first that loads); MEND_BACKEND=<node-gpu|node|wasm|cpu> forces one.`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    console.log(USAGE);
    return cmd ? 0 : 1;
  }
  const commands: Record<string, (a: string[]) => Promise<void>> = {
    predict: cmdPredict,
    edit: cmdEdit,
    pretrain: cmdPretrain,
    "train-editor": cmdTrainEditor,
    world: cmdWorld,
    bench: async (a) => (await import("./bench")).cmdBench(a),
    eval: async (a) => (await import("./cliEval")).cmdEval(a),
    demo: async (a) => (await import("./cliEval")).cmdDemo(a),
  };
  const fn = commands[cmd];
  if (!fn) {
    console.error(`mend: unknown command "${cmd}"\n\n${USAGE}`);
    return 2;
  }
  try {
    await fn(rest);
    return 0;
  } catch (e) {
    console.error(`mend ${cmd}: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.MEND_DEBUG && e instanceof Error) console.error(e.stack);
    return 1;
  }
}

async function cmdPredict(argv: string[]): Promise<void> {
  const a = parseArgs(argv, ["json"]);
  checkFlags(a, ["prompt", "model", "top", "json"]);
  const prompt = str(a, "prompt");
  if (!prompt) throw new Error("--prompt TEXT is required");
  const backend = await initBackend();
  const model = loadModel(str(a, "model", DEFAULT_MODEL_DIR)!);
  const [r] = nextTokenTopK(model, [prompt], num(a, "top", 5));
  disposeParams(model.params);
  if (bool(a, "json")) {
    console.log(JSON.stringify({ prompt, tokens: r.tokens, ids: r.ids, top: r.top.map((t) => ({ token: t.token, prob: t.prob })), backend: backend.kind }));
    return;
  }
  console.log(`backend: ${describeBackend(backend)}`);
  console.log(`tokens: ${r.tokens.join(" ")}`);
  for (const t of r.top) console.log(`  ${t.token.padEnd(16)} ${t.prob.toFixed(4)}`);
}

function readRequests(file: string): EditRequest[] {
  if (!fs.existsSync(file)) throw new Error(`requests file "${file}" not found`);
  let data: unknown;
  try {
    data = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(data)) throw new Error(`${file}: expected a JSON list of {"prompt": ..., "target": ...}`);
  const reqs = data.map((d) => ({ prompt: String(d?.prompt ?? ""), target: String(d?.target ?? "") }));
  validateRequests(reqs);
  return reqs;
}

async function cmdEdit(argv: string[]): Promise<void> {
  const a = parseArgs(argv, ["json"]);
  checkFlags(a, ["prompt", "target", "probe", "model", "editor", "requests", "save", "lr-scale", "calibrate", "json"]);
  const calibrate = str(a, "calibrate") !== undefined ? { ...DEFAULT_CALIBRATION, margin: num(a, "calibrate", DEFAULT_CALIBRATION.margin) } : null;
  if (calibrate) validateCalibration(calibrate);
  const requests = str(a, "requests") ? readRequests(str(a, "requests")!) : [{ prompt: str(a, "prompt") ?? "", target: str(a, "target") ?? "" }];
  if (!str(a, "requests") && (!str(a, "prompt") || !str(a, "target"))) throw new Error("give --prompt TEXT and --target TEXT, or --requests FILE.json");
  validateRequests(requests);
  const backend = await initBackend();
  const model = loadModel(str(a, "model", DEFAULT_MODEL_DIR)!);
  let editor;
  try {
    editor = loadEditor(str(a, "editor", DEFAULT_EDITOR_DIR)!, model.config, model.params);
  } catch (e) {
    disposeParams(model.params);
    throw e;
  }
  try {
    const world = World.load();
    const probes = probesFor(world, requests, a.flags.probe ?? []);
    const result = mendEdit(model, editor, requests, { lrScale: num(a, "lr-scale", 1), calibrate });
    const rows = runProbes(model, result.params, probes);
    if (str(a, "save")) saveModel(str(a, "save")!, { ...model, params: result.params }, { edited_by: "mend-ts", edits: JSON.stringify(requests) });
    if (bool(a, "json")) {
      console.log(
        JSON.stringify({
          requests,
          results: rows.map((r) => ({ prompt: r.prompt, kind: r.kind, expected: r.expected, group: r.group, before: r.before, after: r.after })),
          latency_ms: result.info.latencyMs,
          layers: result.info.layers,
          ...(result.info.calibration ? { calibration: result.info.calibration } : {}),
          backend: backend.kind,
        }),
      );
    } else {
      console.log(`backend: ${describeBackend(backend)}`);
      const c = result.info.calibration;
      const steps = c?.scales.map((x, b) => (c.found[b] ? `${x.toFixed(2)}` : `1 (none right up to ${calibrate!.maxScale})`)).join(", ");
      const step = c ? `, calibrated step ${steps} x alpha (margin ${calibrate!.margin})` : "";
      console.log(`edit: ${requests.map((r) => `"${r.prompt}" -> "${r.target}"`).join("; ")}   (${result.info.latencyMs.toFixed(1)} ms${step})\n`);
      console.log(formatProbeTable(rows));
      if (str(a, "save")) console.log(`\nedited model saved to ${str(a, "save")}`);
    }
    disposeEdit(result);
  } finally {
    disposeEditor(editor);
    disposeParams(model.params);
  }
}

async function cmdPretrain(argv: string[]): Promise<void> {
  const a = parseArgs(argv, ["resume"]);
  checkFlags(a, ["out", "run-dir", "steps", "seed", "resume", "time-budget", "n-embd", "n-layer", "n-head"]);
  const size: Partial<GPT2Config> = {};
  for (const [flag, key] of [["n-embd", "n_embd"], ["n-layer", "n_layer"], ["n-head", "n_head"]] as const) {
    if (str(a, flag) === undefined) continue;
    const v = num(a, flag, 0);
    if (!Number.isInteger(v) || v <= 0) throw new Error(`--${flag} must be a positive integer, got ${str(a, flag)}`);
    size[key] = v;
  }
  if (Object.keys(size).length && bool(a, "resume")) throw new Error("--n-embd/--n-layer/--n-head cannot be combined with --resume (a resumed run keeps its model size)");
  const { n_embd, n_head } = { ...DEFAULT_GPT2_CONFIG, ...size };
  if (n_embd % n_head !== 0) throw new Error(`--n-embd (${n_embd}) must be divisible by --n-head (${n_head})`);
  const backend = await initBackend();
  console.error(`backend: ${describeBackend(backend)}`);
  const out = str(a, "out", DEFAULT_MODEL_DIR)!;
  const runDir = str(a, "run-dir", path.join(PACKAGE_ROOT, "runs", "pretrain"))!;
  const cfg = { ...DEFAULT_PRETRAIN_CONFIG, maxSteps: num(a, "steps", DEFAULT_PRETRAIN_CONFIG.maxSteps), seed: num(a, "seed", 0), timeBudgetSec: num(a, "time-budget", DEFAULT_PRETRAIN_CONFIG.timeBudgetSec), model: size };
  const r = await pretrain(World.load(), runDir, cfg, { resume: bool(a, "resume") });
  const best = loadModel(r.bestDir);
  saveModel(out, best, { steps: String(r.steps), fact_accuracy: String(r.accuracy.overall), seed: String(cfg.seed) });
  disposeParams(best.params);
  console.log(JSON.stringify({ out, steps: r.steps, elapsed_sec: r.elapsedSec, accuracy: r.accuracy }, null, 1));
}

async function cmdTrainEditor(argv: string[]): Promise<void> {
  const a = parseArgs(argv, ["resume"]);
  checkFlags(a, ["model", "out", "run-dir", "steps", "seed", "resume", "time-budget", "lr", "inner-params", "n-edits", "init", "accumulate", "outer-is-edit", "per-fact", "batch-loss", "weighting", "patience", "c-loc", "loc-per-edit", "rank", "rows", "same-answer-loc", "key-precond", "batch-precond", "calibrated-step", "preserve"]);
  const backend = await initBackend();
  console.error(`backend: ${describeBackend(backend)}`);
  const model = loadModel(str(a, "model", DEFAULT_MODEL_DIR)!);
  const world = World.load();
  const out = str(a, "out", DEFAULT_EDITOR_DIR)!;
  const runDir = str(a, "run-dir", path.join(PACKAGE_ROOT, "runs", "editor"))!;
  const d = DEFAULT_TRAIN_EDITOR_CONFIG;
  const inner = str(a, "inner-params")?.split(",").map((s) => s.trim()).filter(Boolean);
  const cfg = { ...d, maxSteps: num(a, "steps", d.maxSteps), seed: num(a, "seed", d.seed), timeBudgetSec: num(a, "time-budget", d.timeBudgetSec), lr: num(a, "lr", d.lr), editor: inner ? { ...d.editor, innerParams: inner } : d.editor,
    nEdits: str(a, "n-edits") ? str(a, "n-edits")!.split(",").map(Number) : d.nEdits,
    initEditor: str(a, "init") ?? null,
    accumulate: num(a, "accumulate", d.accumulate),
    outerIsEdit: num(a, "outer-is-edit", d.outerIsEdit),
    perFact: num(a, "per-fact", d.perFact),
    patience: num(a, "patience", d.patience),
    cLoc: num(a, "c-loc", d.cLoc),
    locPerEdit: num(a, "loc-per-edit", d.locPerEdit ?? 1),
    sameAnswerLoc: num(a, "same-answer-loc", d.sameAnswerLoc ?? 0),
    calibratedStep: num(a, "calibrated-step", d.calibratedStep ?? 0),
    preserve: num(a, "preserve", d.preserve ?? 0),
    weighting: (str(a, "weighting") ?? "call") as "call" | "edit",
  };
  if (cfg.weighting !== "call" && cfg.weighting !== "edit") throw new Error(`--weighting must be "call" or "edit", got "${cfg.weighting}"`);
  const batchLoss = str(a, "batch-loss");
  if (batchLoss !== undefined) {
    if (batchLoss !== "mean" && batchLoss !== "sum") throw new Error(`--batch-loss must be "mean" (official) or "sum", got "${batchLoss}"`);
    cfg.editor = { ...cfg.editor, batchLoss };
  }
  if (str(a, "rank") !== undefined) cfg.editor = { ...cfg.editor, rank: num(a, "rank", 0) };
  const rows = str(a, "rows");
  if (rows !== undefined) {
    if (rows !== "all" && rows !== "target") throw new Error(`--rows must be "all" (official) or "target", got "${rows}"`);
    cfg.editor = { ...cfg.editor, rows };
  }
  if (str(a, "key-precond") !== undefined) {
    const lam = num(a, "key-precond", NaN);
    if (!(lam > 0)) throw new Error(`--key-precond takes the ridge λ, a number > 0, got "${str(a, "key-precond")}"`);
    cfg.editor = { ...cfg.editor, keyPrecond: lam };
  }
  if (str(a, "batch-precond") !== undefined) {
    const beta = num(a, "batch-precond", NaN);
    if (!(beta > 0)) throw new Error(`--batch-precond takes the decorrelation strength β, a number > 0, got "${str(a, "batch-precond")}"`);
    if (!cfg.initEditor && cfg.editor.keyPrecond === undefined) throw new Error("--batch-precond needs key preconditioning: add --key-precond LAMBDA (or --init an editor that has it)");
    cfg.editor = { ...cfg.editor, batchPrecond: beta };
  }
  for (const flag of ["rank", "inner-params", "rows", "key-precond"]) {
    if (cfg.initEditor && str(a, flag) !== undefined) throw new Error(`--${flag} shapes a new editor; with --init the editor keeps its own (drop --${flag})`);
  }
  for (const [flag, v] of [["per-fact", cfg.perFact], ["loc-per-edit", cfg.locPerEdit], ["patience", cfg.patience], ["rank", cfg.editor.rank ?? 1]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${flag} must be a positive integer, got "${str(a, flag)}"`);
  }
  if (!(cfg.sameAnswerLoc >= 0 && cfg.sameAnswerLoc <= 1)) throw new Error(`--same-answer-loc must be a probability in [0, 1], got "${str(a, "same-answer-loc")}"`);
  if (cfg.cLoc < 0) throw new Error(`--c-loc must be >= 0, got "${str(a, "c-loc")}"`);
  if (!(cfg.preserve >= 0)) throw new Error(`--preserve takes the preservation β, a number > 0 (0 = off), got "${str(a, "preserve")}"`);
  if (!(cfg.calibratedStep >= 0)) throw new Error(`--calibrated-step takes the calibration margin, a number > 0 (0 = official step), got "${str(a, "calibrated-step")}"`);
  if (cfg.nEdits.some((k) => !Number.isInteger(k) || k < 1)) throw new Error(`--n-edits must be positive integers, got "${str(a, "n-edits")}"`);
  const r = await trainEditor(model, world.editRecords("train", { perFact: cfg.perFact }), world.editRecords("val"), runDir, cfg, { resume: bool(a, "resume") });
  fs.mkdirSync(out, { recursive: true });
  for (const f of ["config.json", "editor.safetensors"]) writeFileAtomic(path.join(out, f), fs.readFileSync(path.join(r.bestDir, f)));
  disposeParams(model.params);
  console.log(JSON.stringify({ out, steps: r.steps, elapsed_sec: r.elapsedSec, validation: r.best }, null, 1));
}

async function cmdWorld(argv: string[]): Promise<void> {
  const a = parseArgs(argv);
  checkFlags(a, ["out", "seed"]);
  const out = str(a, "out", path.join(PACKAGE_ROOT, "data", "generated"))!;
  const seed = num(a, "seed", 0);
  const world = World.load();
  fs.mkdirSync(out, { recursive: true });
  writeFileAtomic(path.join(out, "corpus.txt"), world.corpus().map((c) => `${c.prompt} ${c.object}`).join("\n") + "\n");
  writeFileAtomic(path.join(out, "splits.json"), JSON.stringify(world.splits(seed), null, 1) + "\n");
  for (const split of ["train", "val", "test"] as const) {
    const recs = world.editRecords(split, { seed });
    writeFileAtomic(path.join(out, `edits.${split}.jsonl`), recs.map((r) => JSON.stringify(r)).join("\n") + "\n");
  }
  console.log(`wrote ${out}: corpus.txt (${world.corpus().length} sentences), splits.json, edits.{train,val,test}.jsonl`);
}
