/** `mend eval`: every method on the same test (or validation) edits: table, JSON, HTML report, target checks. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DEFAULT_FT_CONFIG, FineTuneOptimizer } from "../baselines/fineTune";
import { chooseCache, describeKeying } from "../baselines/cache";
import { disposeEnn, EnnEditor, loadEnn } from "../baselines/enn";
import { disposeKe, KeEditor, loadKe } from "../baselines/ke";
import { DEFAULT_EVAL_CONFIG, EvalResult, evaluateMethods, worldMethodContext } from "../eval/evaluate";
import { buildMethods, EditMethod, METHODS } from "../eval/methods";
import { evaluateDataset, formatDatasetTable } from "../eval/datasetEval";
import { checkRecordsTokenize, loadDataset, parseDataSpec } from "../datasets/records";
import { loadModel } from "../model/modelFolder";
import { lastBlocksMlp } from "../mend/editor";
import { ProgressBar } from "./progress";
import { targetChecks } from "../eval/targets";
import { loadEditor } from "../extensions/editorExtensions";
import { describeBackend, initBackend } from "../model/backend";
import { disposeParams } from "../model/gpt";
import { writeFolder } from "../model/checkpointFolder";
import { disposeEditor, Editor } from "../mend/editor";
import { evalFigures, htmlReport, markdownTable } from "../viz/plots";
import { World } from "../world/world";
import { DEFAULT_BATCH_EDITOR_DIR, DEFAULT_EDITOR_DIR, DEFAULT_ENN_DIR, DEFAULT_KE_DIR, DEFAULT_MODEL_DIR, FORCE_FLAG, JSON_FLAG, MODEL_FLAG, guardOutput, loadModelAndEditor, newRunDir, runMendChild } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";

export const spec: CommandSpec = {
  name: "eval",
  summary: "MEND, its extensions, KE, ENN, the cache, FT and FT+KL on the same edits: single, batched and sequential (writes a new runs/eval-<time>/)",
  flags: [
    { name: "methods", type: "strings", value: "M,...", help: "methods to compare", choices: METHODS, default: "MEND,MEND-cal,MEND-batch,MEND-batch-cal,FT,FT+KL" },
    { name: "data", type: "string", value: "KIND:FILE", help: "evaluate single edits on zsre:FILE or counterfact:FILE with its metrics (methods MEND, MEND-cal, KE, ENN, cache, FT, FT+KL) instead of the facts world" },
    { name: "split", type: "string", value: "S", help: "report on test; compare configurations on val", choices: ["test", "val"], default: "test" },
    { name: "limit", type: "int", value: "N", help: "only the first N edits of the split", min: 1 },
    { name: "batch-sizes", type: "ints", value: "K,...", help: "edits per call in the batched evaluation", default: DEFAULT_EVAL_CONFIG.batchSizes.join(","), min: 1 },
    { name: "sequential", type: "int", value: "N", help: "edits applied one after another in the sequential evaluation (0: none)", default: DEFAULT_EVAL_CONFIG.sequential, min: 0 },
    { name: "out", type: "string", value: "DIR", help: "where results.json, results.md and report.html go (see --force)", default: "runs/eval-<time>" },
    FORCE_FLAG,
    MODEL_FLAG,
    { name: "editor", type: "string", value: "DIR", help: "the single-edit editor (MEND, MEND-cal)", default: "checkpoints/editor" },
    { name: "batch-editor", type: "string", value: "DIR", help: "the batch editor (MEND-batch*)", default: "checkpoints/editor-batch" },
    { name: "ke", type: "string", value: "DIR", help: "the trained KE editor (KE)", default: "checkpoints/ke" },
    { name: "enn", type: "string", value: "DIR", help: "the trained ENN: step sizes and its copy of the base model (ENN)", default: "checkpoints/enn" },
    JSON_FLAG,
    { name: "jobs", type: "int", value: "N", help: "worker processes (one method each)", default: "cores", min: 1, advanced: true },
    { name: "calibrate", type: "number", value: "MARGIN", help: "margin of MEND-cal and MEND-batch-cal (defaults 1.3 and 1.4)", above: 0, advanced: true },
    { name: "ft-lr", type: "number", value: "LR", help: "FT and FT+KL lr", default: DEFAULT_FT_CONFIG.lr, above: 0, advanced: true },
    { name: "ft-optimizer", type: "string", value: "OPT", help: "FT and FT+KL optimiser", choices: ["rmsprop", "adam"], default: DEFAULT_FT_CONFIG.optimizer, advanced: true },
    { name: "worker", type: "boolean", help: "(internal) evaluate in this process and print the result as JSON", advanced: true },
  ],
};

/**
 * Methods that need nothing but their trained editors and the dataset (FT+KL takes its locality texts,
 * the cache its threshold ε*, from records not evaluated).
 */
const DATASET_METHODS = ["MEND", "MEND-cal", "KE", "ENN", "cache", "FT", "FT+KL"];

/** Where the results go: --out, or a new run folder; refused before any work when it would replace what the user did not name. */
function outputOf(f: Flags): string {
  if (flagBool(f, "worker")) return ""; // a worker prints its result; the parent writes
  const out = flagString(f, "out") ?? newRunDir("eval");
  guardReport(f, out);
  return out;
}

const guardReport = (f: Flags, out: string) => guardOutput(out, "eval-report", { force: flagBool(f, "force"), sources: [flagString(f, "model") ?? DEFAULT_MODEL_DIR, flagString(f, "editor") ?? DEFAULT_EDITOR_DIR] });

/** `mend eval --data KIND:FILE`: single edits of a dataset's first records, with its own metrics. */
async function runDataset(f: Flags): Promise<void> {
  const spec = parseDataSpec(flagString(f, "data")!);
  const names = (f.methods as string[] | undefined) ?? ["MEND", "FT"];
  const bad = names.filter((n) => !DATASET_METHODS.includes(n));
  if (bad.length) throw new Error(`--data evaluates ${DATASET_METHODS.join(", ")}; ${bad.join(", ")} need the facts world`);
  for (const flag of ["split", "batch-sizes", "sequential", "batch-editor", "jobs"]) if (f[flag] !== undefined) throw new Error(`--${flag} is for the facts world's evaluation, not --data`);
  const out = outputOf(f);
  const ds = loadDataset(spec.kind, spec.file);
  if (ds.skipped.length) console.error(`${spec.file}: skipped ${ds.skipped.length} record(s) (${ds.skipped[0].reason})`);
  const limit = flagNumber(f, "limit") ?? Math.min(100, ds.records.length);
  const backend = await initBackend();
  console.error(`backend: ${describeBackend(backend)}`);
  const needEditor = names.some((n) => n.startsWith("MEND"));
  const modelDir = flagString(f, "model") ?? DEFAULT_MODEL_DIR;
  const { model, editor } = needEditor ? loadModelAndEditor(modelDir, flagString(f, "editor") ?? DEFAULT_EDITOR_DIR) : { model: loadModel(modelDir), editor: null };
  let ke: KeEditor | undefined;
  let enn: EnnEditor | undefined;
  try {
    checkRecordsTokenize(ds, model.tokenizer);
    const innerParams = editor?.config.innerParams ?? lastBlocksMlp(model.config.n_layer);
    const ft = { lr: flagNumber(f, "ft-lr") ?? DEFAULT_FT_CONFIG.lr, optimizer: (flagString(f, "ft-optimizer") ?? DEFAULT_FT_CONFIG.optimizer) as FineTuneOptimizer };
    // FT+KL's locality texts: the locality pairs of the last 16 records after --limit (never evaluated).
    const locTexts = ds.records.slice(limit).slice(-16).flatMap((r) => r.locality.slice(0, 1).map((l) => ({ prompt: l.prompt, target: l.target })));
    if (names.includes("FT+KL") && !locTexts.length) throw new Error("FT+KL takes its locality texts from records after --limit; the file has none left (lower --limit)");
    // The cache's ε*: chosen on the last 32 records after --limit (never evaluated), as the facts world's on validation edits.
    const held = ds.records.slice(limit).slice(-32);
    if (names.includes("cache") && !held.length) throw new Error("the cache chooses its threshold on records after --limit; the file has none left (lower --limit)");
    if (names.includes("KE")) ke = loadKe(flagString(f, "ke") ?? DEFAULT_KE_DIR, model);
    if (names.includes("ENN")) enn = loadEnn(flagString(f, "enn") ?? DEFAULT_ENN_DIR, model);
    const cache = names.includes("cache") ? chooseCache(model, held) : undefined;
    const methods = buildMethods(names, { ...(editor ? { editor } : {}), innerParams, ft, locTexts, ke, enn, cacheThreshold: cache?.threshold, cacheKeying: cache?.keying, margin: flagNumber(f, "calibrate") });
    const bar = new ProgressBar(limit * methods.length, "eval");
    let done = 0;
    const r = evaluateDataset(model, methods, ds, { limit, onRecord: () => bar.update(++done, {}) });
    bar.done();
    writeFolder(out, "eval-report", { "results.json": JSON.stringify(r, null, 1) + "\n", "results.md": "```\n" + formatDatasetTable(r) + "\n```\n" }, { check: () => guardReport(f, out) });
    if (flagBool(f, "json")) console.log(JSON.stringify({ backend: backend.kind, ...r, out }));
    else console.log(`${formatDatasetTable(r)}\n\nwrote ${out}/results.json, results.md`);
  } finally {
    if (editor) disposeEditor(editor);
    if (ke) disposeKe(ke);
    if (enn) disposeEnn(enn);
    disposeParams(model.params);
  }
}

export async function run(f: Flags, argv: readonly string[]): Promise<void> {
  if (flagString(f, "data")) return runDataset(f);
  const out = outputOf(f);
  const split = (flagString(f, "split") ?? "test") as "test" | "val";
  const batchDir = flagString(f, "batch-editor") ?? DEFAULT_BATCH_EDITOR_DIR;
  // Given explicitly, the batch editor is evaluated (a wrong folder is then a clear load error); by default only if shipped.
  const haveBatch = f["batch-editor"] !== undefined || fs.existsSync(path.join(batchDir, "config.json"));
  const names = (f.methods as string[] | undefined) ?? (haveBatch ? ["MEND", "MEND-cal", "MEND-batch", "MEND-batch-cal", "FT", "FT+KL"] : ["MEND", "MEND-cal", "FT", "FT+KL"]);
  const margin = flagNumber(f, "calibrate");
  const ft = { lr: flagNumber(f, "ft-lr") ?? DEFAULT_FT_CONFIG.lr, optimizer: (flagString(f, "ft-optimizer") ?? DEFAULT_FT_CONFIG.optimizer) as FineTuneOptimizer };
  const jobs = Math.max(1, Math.min(names.length, flagNumber(f, "jobs") ?? os.cpus().length));
  const backend = await initBackend();
  console.error(`backend: ${describeBackend(backend)}`);
  const { model, editor } = loadModelAndEditor(flagString(f, "model") ?? DEFAULT_MODEL_DIR, flagString(f, "editor") ?? DEFAULT_EDITOR_DIR);
  let batchEditor: Editor | undefined;
  let ke: KeEditor | undefined;
  let enn: EnnEditor | undefined;
  let methods: EditMethod[] = [];
  try {
    const world = World.load();
    let r: EvalResult;
    if (jobs > 1 && !flagBool(f, "worker")) {
      // The wasm backend is single-threaded: evaluate the methods in parallel worker processes.
      r = await evalInWorkers([...argv], names, jobs);
    } else {
      batchEditor = names.some((n) => n.startsWith("MEND-batch")) ? loadEditor(batchDir, model.config, model.params) : undefined;
      if (names.includes("KE")) ke = loadKe(flagString(f, "ke") ?? DEFAULT_KE_DIR, model);
      if (names.includes("ENN")) enn = loadEnn(flagString(f, "enn") ?? DEFAULT_ENN_DIR, model);
      // The cache's ε*: chosen on the validation split's edits, whichever split is reported.
      const cache = names.includes("cache") ? chooseCache(model, world.editRecords("val")) : undefined;
      if (cache) console.error(`cache: keyed on ${describeKeying(cache.keying)}, ε* ${cache.threshold.toFixed(2)} (chosen on validation edits: paraphrase hits ${cache.paraphraseHits.toFixed(3)}, locality misses ${cache.localityMisses.toFixed(3)})`);
      methods = buildMethods(names, { editor, batchEditor, margin, ft, ke, enn, cacheThreshold: cache?.threshold, cacheKeying: cache?.keying, ...worldMethodContext(world, model) });
      let records = world.editRecords(split);
      const limit = flagNumber(f, "limit");
      if (limit !== undefined) records = records.slice(0, limit);
      const cfg = { ...DEFAULT_EVAL_CONFIG, batchSizes: (f["batch-sizes"] as number[] | undefined) ?? DEFAULT_EVAL_CONFIG.batchSizes, sequential: flagNumber(f, "sequential") ?? DEFAULT_EVAL_CONFIG.sequential };
      r = evaluateMethods(model, world, methods, records, cfg, (s2) => console.error(s2));
    }
    if (flagBool(f, "worker")) {
      console.log(JSON.stringify(r));
      return;
    }
    writeEvalOutputs(out, r, () => guardReport(f, out));
    const checks = targetChecks(r, ft);
    if (flagBool(f, "json")) {
      console.log(JSON.stringify({ backend: backend.kind, split, ...r, targets: checks, out }));
      return;
    }
    console.log(markdownTable(r.methods));
    console.log(`\nbatched edits (ES / locality unchanged):`);
    for (const [name, pts] of Object.entries(r.batched)) console.log(`  ${name.padEnd(10)} ${pts.map((p) => `k=${p.k}: ${p.es.toFixed(3)} / ${p.locality.toFixed(3)}`).join("   ")}`);
    for (const [name, c] of Object.entries(r.sequential)) {
      console.log(`sequential ${name}: after ${c.retention.length} edits retention ${c.retention[c.retention.length - 1]?.toFixed(3)}, locality ${c.locality[c.locality.length - 1]?.toFixed(3)}`);
    }
    console.log(`\ntargets:`);
    for (const c of checks) console.log(`  ${c.ok ? "PASS" : "MISS"}  ${c.name}: ${c.value.toFixed(3)} (${c.target})`);
    console.log(`\n${r.n_test} ${split} edits, ${r.elapsed_sec.toFixed(0)} s; wrote ${out}/results.json, results.md, report.html`);
  } finally {
    for (const m of methods) m.dispose?.();
    if (batchEditor) disposeEditor(batchEditor);
    if (ke) disposeKe(ke);
    if (enn) disposeEnn(enn);
    disposeEditor(editor);
    disposeParams(model.params);
  }
}

/** Run `mend eval --worker` per method, `jobs` at a time (slowest first), and merge the results. */
async function evalInWorkers(argv: string[], names: string[], jobs: number): Promise<EvalResult> {
  const t0 = performance.now();
  const cost: Record<string, number> = { "FT+KL": 3, FT: 2, ENN: 1.5, KE: 1.2, "MEND-cal": 1.5, "MEND-batch-cal": 1.5, "MEND-batch-pres": 1.8, MEND: 1, "MEND-batch": 1 };
  const queue = [...names].sort((x, y) => (cost[y] ?? 1) - (cost[x] ?? 1));
  const base = argv.filter((x, i) => !["--methods", "--jobs", "--json", "--out"].includes(x) && !["--methods", "--jobs", "--out"].includes(argv[i - 1]) && !x.startsWith("--methods=") && !x.startsWith("--jobs="));
  const parts: EvalResult[] = [];
  const runOne = async (name: string) => {
    parts.push((await runMendChild(["eval", ...base, "--methods", name, "--jobs", "1", "--worker"], `evaluation of ${name}`)) as EvalResult);
  };
  const workers = Array.from({ length: jobs }, async () => {
    for (let n = queue.shift(); n; n = queue.shift()) await runOne(n);
  });
  await Promise.all(workers);
  const merged: EvalResult = { n_test: parts[0].n_test, methods: {}, drift: {}, heatmap: {}, batched: {}, sequential: {}, elapsed_sec: (performance.now() - t0) / 1000 };
  for (const n of names) {
    const p = parts.find((x) => x.methods[n]);
    if (!p) throw new Error(`no result for ${n}`);
    merged.methods[n] = p.methods[n];
    merged.drift[n] = p.drift[n];
    merged.heatmap[n] = p.heatmap[n];
    merged.batched[n] = p.batched[n];
    if (p.sequential[n]) merged.sequential[n] = p.sequential[n];
  }
  return merged;
}

/** results.json, results.md and report.html as one folder (`check`: the output guard, re-run under the folder's lock). */
function writeEvalOutputs(out: string, r: EvalResult, check: () => void): void {
  const md = `# mend eval\n\n${markdownTable(r.methods)}\n`;
  const intro = `MEND vs fine-tuning on ${r.n_test} test edits of the facts world (held-out subjects; paraphrases use held-out templates).\nES = every target token is the argmax; locality = fraction of locality answers whose argmax tokens are unchanged.`;
  const files = { "results.json": JSON.stringify(r, null, 1) + "\n", "results.md": md, "report.html": htmlReport("mend-ts evaluation", intro, markdownTable(r.methods), evalFigures(r)) };
  writeFolder(out, "eval-report", files, { check });
}

