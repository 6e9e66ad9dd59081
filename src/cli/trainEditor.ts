/** `mend train-editor`: meta-train a MEND editor for a base model on the facts world. */
import * as fs from "fs";
import * as path from "path";
import { checkRecordsTokenize, loadDataset, parseDataSpec, splitRecords } from "../datasets/records";
import type { Tokenizer } from "../model/tokenizer";
import { OFFICIAL_RECIPE, prepareTraining, TrainingRecipe } from "../extensions/trainingRecipe";
import { describeBackend, initBackend } from "../model/backend";
import { disposeParams } from "../model/gpt";
import { loadModel } from "../model/modelFolder";
import { readFolderFiles, recoverForRead, sha256, writeFolder } from "../model/checkpointFolder";
import { DEFAULT_TRAIN_EDITOR_CONFIG, readTrainerState, TrainEditorConfig, trainEditor } from "../mend/train";
import type { EditorTransform } from "../mend/editor";
import type { EditorKind } from "../mend/editorKind";
import { keKind } from "../baselines/ke";
import { ennKind } from "../baselines/enn";
import { EditRecord } from "../datasets/editRecord";
import { World } from "../world/world";
import { DEFAULT_MODEL_DIR, FORCE_FLAG, guardOutput, MODEL_FLAG, newRunDir, RESUME_FLAG } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";
import { ProgressBar } from "./progress";

const d = DEFAULT_TRAIN_EDITOR_CONFIG;
export const spec: CommandSpec = {
  name: "train-editor",
  summary: "meta-train a MEND editor (or KE, ENN) on the facts world's training edits, or on zsRE / CounterFact (validation and early stopping)",
  flags: [
    MODEL_FLAG,
    { name: "data", type: "string", value: "KIND:FILE", help: "train on a dataset, zsre:FILE or counterfact:FILE (its last records validate), instead of the facts world" },
    { name: "out", type: "string", value: "DIR", help: "where the best editor goes", default: "RUN-DIR/editor" },
    { name: "run-dir", type: "string", value: "DIR", help: "checkpoints of the run (best, last with optimizer and trainer state)", default: "a new runs/train-editor-<time>" },
    FORCE_FLAG,
    { name: "steps", type: "int", value: "N", help: "upper bound on optimizer steps", default: d.maxSteps, min: 1 },
    { name: "seed", type: "int", value: "S", help: "seed of the editor's initialisation and the data order", default: d.seed, min: 0 },
    { name: "time-budget", type: "number", value: "SEC", help: "stop at the next validation after this many seconds", default: d.timeBudgetSec, above: 0 },
    { name: "patience", type: "int", value: "STEPS", help: "stop after this many steps without a better validation loss", default: d.patience, min: 1 },
    RESUME_FLAG,
    { name: "rank", type: "int", value: "R", help: "rank of each editor layer (official 1920, capped at d_in + d_out)", default: 1920, min: 1 },
    { name: "inner-params", type: "strings", value: "A,B,...", help: "edited weights (official: the last 3 blocks' mlp.c_fc and mlp.c_proj)" },
    { name: "lr", type: "number", value: "LR", help: "Adam lr of the editor networks", default: d.lr, above: 0 },
    { name: "accumulate", type: "int", value: "N", help: "edit calls per optimizer step", default: d.accumulate, min: 1 },
    { name: "calls-per-pass", type: "int", value: "N", help: "edit calls per batched pass, their gradients summed by share (the same step in less memory; default: all of a step's calls in one pass)", min: 1, advanced: true },
    { name: "edit-lr-lr", type: "string", value: "LR", help: "Adam lr of the learned edit lrs α (ENN's step sizes): a number, or 'main' for the networks' --lr, as the official trainer trains them", default: String(d.editLrLr), advanced: true },
    { name: "n-edits", type: "ints", value: "K,...", help: "edits per call, drawn per call from this list", default: "1", min: 1 },
    { name: "c-loc", type: "number", value: "C", help: "weight of the locality loss (c_edit is 0.1)", default: d.cLoc, min: 0 },
    { name: "per-fact", type: "int", value: "N", help: "new targets per training fact", default: d.perFact, min: 1, advanced: true },
    { name: "outer-is-edit", type: "number", value: "P", help: "probability that x'_e is x_e itself (EasyEdit's choice; official 0)", default: 0, min: 0, max: 1, advanced: true },
    { name: "init", type: "string", value: "DIR", help: "start from this editor folder (a second stage)", advanced: true },
    { name: "locality", type: "string", value: "SOURCE", help: "training locality texts: the edit record's own (record) or another record's edit input (other-record, the official sampler)", choices: ["record", "other-record"], default: "record", advanced: true },
    { name: "loc-per-edit", type: "int", value: "N", help: "locality texts per training edit (our extension; shipped recipe 3)", default: 1, min: 1, advanced: true },
    { name: "same-answer-loc", type: "number", value: "P", help: "probability of a same-relation, same-answer locality text (our extension)", default: 0, min: 0, max: 1, advanced: true },
    { name: "batch-loss", type: "string", value: "L", help: "edit loss of a k-request call: one mean (official) or each request's mean, summed (our extension)", choices: ["mean", "sum"], default: "mean", advanced: true },
    { name: "rows", type: "string", value: "R", help: "rows that feed the editor: all with a gradient (official) or the target positions (our extension)", choices: ["all", "target"], default: "all", advanced: true },
    { name: "kind", type: "string", value: "K", help: "the learned editor: MEND, or the paper's baselines KE (De Cao et al.) and ENN (Sinitsin et al.; trains a copy of the base model)", choices: ["MEND", "KE", "ENN"], default: "MEND" },
    { name: "net", type: "string", value: "T", help: "what the editor nets transform: concat(u, δ) (official), u only, δ only, or the smaller side (the paper's ablations)", choices: ["joint", "u", "delta", "smaller"], default: "joint", advanced: true },
    { name: "shared", type: "string", value: "yes|no", help: "one net per weight shape with a mode per weight (official), or one net per weight (the paper's 'no sharing')", choices: ["yes", "no"], default: "yes", advanced: true },
    { name: "norm", type: "string", value: "yes|no", help: "normalise u and δ with running statistics (official), or not (the paper's 'no norm')", choices: ["yes", "no"], default: "yes", advanced: true },
    { name: "editor-init", type: "string", value: "I", help: "identity init with residual (official) or Xavier without residual (the paper's 'no ID init')", choices: ["id", "xavier"], default: "id", advanced: true },
    { name: "key-precond", type: "number", value: "LAMBDA", help: "key preconditioning with ridge λ (our extension)", above: 0, advanced: true },
    { name: "batch-precond", type: "number", value: "BETA", help: "batch key decorrelation with strength β, needs key preconditioning (our extension)", above: 0, advanced: true },
  ],
  notes: ["The shipped editor and the batch editor are regenerated by the commands in README (Regenerating the checkpoints)."],
};

/** Flags that may be given with --resume (the rest are the run's own settings). */
const RESUMABLE = new Set(["model", "out", "run-dir", "resume", "force", "steps", "time-budget", "patience"]);

/** The settings a run was started with (its last checkpoint's trainer state), for --resume. */
function runConfig(runDir: string): TrainEditorConfig {
  const file = path.join(runDir, "last", "trainer_state.json");
  recoverForRead(path.join(runDir, "last"));
  if (!fs.existsSync(file)) throw new Error(`nothing to resume: ${file} not found (start a new run without --resume, or name the run folder)`);
  return readTrainerState(file).config;
}

/** The SHA-256 of a --data spec's file (KIND:FILE); an error names a file that cannot be read. */
function dataFileSha256(spec: string): string {
  const file = parseDataSpec(spec).file;
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`--data ${spec}: ${(e as NodeJS.ErrnoException).code === "EISDIR" ? `${file} is a folder, not a data file` : `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`}`);
  }
  return sha256(bytes);
}

/** Training and validation records: a dataset's (its last records validate) or the facts world's. */
function trainingRecords(cfg: TrainEditorConfig, tokenizer: Tokenizer): { train: EditRecord[]; val: EditRecord[] } {
  if (cfg.data) {
    const spec = parseDataSpec(cfg.data);
    const ds = loadDataset(spec.kind, spec.file);
    checkRecordsTokenize(ds, tokenizer);
    if (ds.skipped.length) console.error(`${spec.file}: skipped ${ds.skipped.length} record(s): ${ds.skipped.slice(0, 3).map((s) => `${s.index} (${s.reason})`).join(", ")}`);
    return splitRecords(ds.records, cfg.valSize);
  }
  const world = World.load();
  return { train: world.editRecords("train", { perFact: cfg.perFact }), val: world.editRecords("val") };
}

/** The recorded setting each of a run's own flags sets (a resumed run accepts a flag that repeats it). */
const RUN_SETTING: Record<string, (c: TrainEditorConfig) => unknown> = {
  data: (c) => c.data ?? null,
  rank: (c) => (c.editor as { rank?: number }).rank,
  "inner-params": (c) => (c.editor as { innerParams?: string[] }).innerParams,
  seed: (c) => c.seed,
  lr: (c) => c.lr,
  "n-edits": (c) => c.nEdits,
  accumulate: (c) => c.accumulate,
  "calls-per-pass": (c) => c.callsPerPass ?? c.accumulate,
  "edit-lr-lr": (c) => c.editLrLr,
  "outer-is-edit": (c) => c.outerIsEdit,
  "per-fact": (c) => c.perFact,
  "c-loc": (c) => c.cLoc,
  init: (c) => c.initEditor,
  locality: (c) => (c.extensions?.localitySource as string | undefined) ?? "record",
  "loc-per-edit": (c) => (c.extensions?.locPerEdit as number | undefined) ?? 1,
  "same-answer-loc": (c) => (c.extensions?.sameAnswerLoc as number | undefined) ?? 0,
  "batch-loss": (c) => (c.extensions?.batchLoss as string | undefined) ?? "mean",
  rows: (c) => (c.extensions?.rows as string | undefined) ?? "all",
  "key-precond": (c) => c.extensions?.keyPrecond,
  kind: (c) => (c.extensions?.kind as string | undefined) ?? "MEND",
  net: (c) => (c.editor as { transform?: string }).transform ?? "joint",
  shared: (c) => ((c.editor as { shared?: boolean }).shared === false ? "no" : "yes"),
  norm: (c) => ((c.editor as { norm?: boolean }).norm === false ? "no" : "yes"),
  "editor-init": (c) => (c.editor as { init?: string }).init ?? "id",
  "batch-precond": (c) => c.extensions?.batchPrecond,
};

/** `--edit-lr-lr`: a positive number, or "main" (the networks' lr, as the official trainer in effect trains α). */
function editLrLrOf(v: string | undefined, mainLr: number): number {
  if (v === undefined) return d.editLrLr;
  if (v === "main") return mainLr;
  const x = Number(v);
  if (!(Number.isFinite(x) && x > 0)) throw new Error(`--edit-lr-lr ${v}: a positive number, or "main" for the networks' --lr`);
  return x;
}

export async function run(f: Flags): Promise<void> {
  const resume = flagBool(f, "resume");
  if (resume && !flagString(f, "run-dir")) throw new Error("--resume needs --run-dir DIR: the run to continue");
  const init = flagString(f, "init") ?? null;
  for (const flag of ["rank", "inner-params", "rows", "key-precond", "net", "shared", "norm", "editor-init"]) {
    if (init && f[flag] !== undefined) throw new Error(`--${flag} shapes a new editor; with --init the editor keeps its own (drop --${flag})`);
  }
  const editor: TrainEditorConfig["editor"] = {};
  if (f["inner-params"]) editor.innerParams = f["inner-params"] as string[];
  if (flagNumber(f, "rank") !== undefined) editor.rank = flagNumber(f, "rank")!;
  if (flagString(f, "net") && flagString(f, "net") !== "joint") editor.transform = flagString(f, "net") as EditorTransform;
  if (flagString(f, "shared") === "no") editor.shared = false;
  if (flagString(f, "norm") === "no") editor.norm = false;
  if (flagString(f, "editor-init") === "xavier") editor.init = "xavier";
  const recipe: TrainingRecipe = {
    init,
    locality: { locPerEdit: flagNumber(f, "loc-per-edit") ?? 1, sameAnswerLoc: flagNumber(f, "same-answer-loc") ?? 0 },
    localitySource: (flagString(f, "locality") ?? "record") as "record" | "other-record",
    extensions: {
      ...(flagString(f, "batch-loss") ? { batchLoss: flagString(f, "batch-loss") as "mean" | "sum" } : {}),
      ...(flagString(f, "rows") === "target" ? { rows: "target" as const } : {}),
      ...(flagNumber(f, "key-precond") !== undefined ? { keyPrecond: flagNumber(f, "key-precond")! } : {}),
      ...(flagNumber(f, "batch-precond") !== undefined ? { batchPrecond: flagNumber(f, "batch-precond")! } : {}),
    },
  };
  const kindName = flagString(f, "kind") ?? "MEND";
  if (kindName !== "MEND") {
    const mendOnly = ["rank", "net", "shared", "norm", "editor-init", "init", "batch-loss", "rows", "key-precond", "batch-precond"].filter((k) => f[k] !== undefined);
    if (mendOnly.length) throw new Error(`${mendOnly.map((k) => `--${k}`).join(", ")} shape(s) a MEND editor; --kind ${kindName} has its own (drop them)`);
  }
  if (!init && recipe.extensions.batchPrecond !== undefined && recipe.extensions.keyPrecond === undefined) throw new Error("--batch-precond needs key preconditioning: add --key-precond LAMBDA (or --init an editor that has it)");
  const cfg: TrainEditorConfig = {
    ...d,
    maxSteps: flagNumber(f, "steps") ?? d.maxSteps,
    seed: flagNumber(f, "seed") ?? d.seed,
    timeBudgetSec: flagNumber(f, "time-budget") ?? d.timeBudgetSec,
    lr: flagNumber(f, "lr") ?? d.lr,
    editor,
    nEdits: (f["n-edits"] as number[] | undefined) ?? d.nEdits,
    initEditor: init,
    accumulate: flagNumber(f, "accumulate") ?? d.accumulate,
    ...(flagNumber(f, "calls-per-pass") !== undefined ? { callsPerPass: flagNumber(f, "calls-per-pass")! } : {}),
    editLrLr: editLrLrOf(flagString(f, "edit-lr-lr"), flagNumber(f, "lr") ?? d.lr),
    outerIsEdit: flagNumber(f, "outer-is-edit") ?? d.outerIsEdit,
    perFact: flagNumber(f, "per-fact") ?? d.perFact,
    data: flagString(f, "data") ?? null,
    ...(flagString(f, "data") && !resume ? { dataSha256: dataFileSha256(flagString(f, "data")!) } : {}),
    patience: flagNumber(f, "patience") ?? d.patience,
    cLoc: flagNumber(f, "c-loc") ?? d.cLoc,
    extensions: { ...(kindName !== "MEND" ? { kind: kindName } : {}), ...(recipe.extensions as Record<string, unknown>), ...(recipe.locality.locPerEdit !== 1 ? { locPerEdit: recipe.locality.locPerEdit } : {}), ...(recipe.locality.sameAnswerLoc ? { sameAnswerLoc: recipe.locality.sameAnswerLoc } : {}), ...(recipe.localitySource === "other-record" ? { localitySource: "other-record" } : {}) },
  };
  const modelDir = flagString(f, "model") ?? DEFAULT_MODEL_DIR;
  const runDir = flagString(f, "run-dir") ?? newRunDir("train-editor");
  if (resume) {
    // A resumed run keeps its own settings: a flag may repeat one, not change it.
    const was = runConfig(runDir);
    const changed = Object.keys(f).filter((k) => k !== "help" && f[k] !== undefined && !RESUMABLE.has(k) && (!RUN_SETTING[k] || JSON.stringify(RUN_SETTING[k](cfg)) !== JSON.stringify(RUN_SETTING[k](was))));
    if (changed.length) throw new Error(`${changed.map((k) => `--${k}`).join(", ")} cannot change when resuming: a resumed run keeps its own settings (${changed.map((k) => (RUN_SETTING[k] ? `--${k} was ${JSON.stringify(RUN_SETTING[k](was))}` : `--${k} is not a setting of the run`)).join("; ")}); only --steps, --time-budget and --patience may change`);
  }
  const out = flagString(f, "out") ?? path.join(runDir, "editor");
  const ownOutput = flagBool(f, "force") || (resume && !flagString(f, "out")); // a resumed run may replace its own output
  guardOutput(out, "editor", { force: ownOutput, sources: [modelDir, ...(init ? [init] : [])] });
  const backend = await initBackend();
  console.error(`backend: ${describeBackend(backend)}`);
  console.error(`run folder: ${runDir}; the best editor goes to ${out}`);
  if (cfg.data && f["per-fact"] !== undefined) throw new Error("--per-fact draws new targets for the facts world; a dataset brings its own (drop --per-fact)");
  const started = resume ? runConfig(runDir) : cfg; // a resumed run reads what it started on, and samples its locality texts as it did
  if (resume && started.data && started.dataSha256) {
    const now = dataFileSha256(started.data);
    if (now !== started.dataSha256) throw new Error(`cannot resume: ${parseDataSpec(started.data).file}, the run's --data, changed since the run started (SHA-256 ${started.dataSha256.slice(0, 12)}… then, ${now.slice(0, 12)}… now); a resumed run must train on the data it started on: restore the file, or start a new run`);
  }
  const x = (started.extensions ?? {}) as { locPerEdit?: number; sameAnswerLoc?: number; localitySource?: "record" | "other-record" };
  const resumedLocality = { locality: { locPerEdit: x.locPerEdit ?? 1, sameAnswerLoc: x.sameAnswerLoc ?? 0 }, localitySource: x.localitySource ?? "record" };
  const model = loadModel(modelDir);
  const bar = new ProgressBar(cfg.maxSteps, "train-editor");
  try {
    const { train, val } = trainingRecords(started, model.tokenizer);
    // A resumed run loads its editor (and its extensions) from the run folder.
    const prep = prepareTraining(model, train, cfg, resume ? { ...OFFICIAL_RECIPE, ...resumedLocality } : recipe);
    const kindOf = ((started.extensions?.kind as string | undefined) ?? "MEND") as "MEND" | "KE" | "ENN";
    const r = await trainEditor<unknown>(model, train, val, runDir, cfg, {
      resume,
      ...(kindOf === "MEND" ? prep : { pickLocality: prep.pickLocality, kind: (kindOf === "KE" ? keKind : ennKind) as EditorKind<unknown> }),
      resumeWith: { ...(f.steps !== undefined ? { maxSteps: cfg.maxSteps } : {}), ...(f["time-budget"] !== undefined ? { timeBudgetSec: cfg.timeBudgetSec } : {}), ...(f.patience !== undefined ? { patience: cfg.patience } : {}) },
      onProgress: (p) => bar.update(p.step, { L_edit: p.lossEdit, L_loc: p.lossLoc, "edit acc": p.editAcc, "val ES": p.lastVal?.editAcc ?? NaN, "val loc": p.lastVal?.locUnchanged ?? NaN, skipped: p.skipped }, p.val !== undefined),
    });
    bar.done();
    writeFolder(out, "editor", readFolderFiles(r.bestDir), { check: () => guardOutput(out, "editor", { force: ownOutput, sources: [modelDir, ...(init ? [init] : [])] }) });
    if (r.stoppedBy === "time budget") console.error(`stopped by the time budget (--time-budget ${cfg.timeBudgetSec} s) after step ${r.steps} of ${cfg.maxSteps}; continue with --resume --run-dir ${runDir} --time-budget SEC`);
    console.log(JSON.stringify({ out, run_dir: runDir, steps: r.steps, steps_run: r.stepsRun, stopped_by: r.stoppedBy, elapsed_sec: r.elapsedSec, validation: r.best }, null, 1));
  } finally {
    bar.done();
    disposeParams(model.params);
  }
}
