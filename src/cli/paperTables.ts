/**
 * The evaluation half of `mend paper`: every trained (row, seed) of PAPER_ROWS, and the rows that
 * need no training (FT, FT+KL, the cache at ε*, half and twice ε*), evaluated on the facts world's test
 * split, each in a process of its own (`--jobs` at a time) whose result is kept beside its run
 * (`<run>.eval.json`, so an interrupted evaluation continues); then the tables: mean and 95%
 * interval over seeds, beside the paper's numbers (PAPER_NUMBERS), written as one folder
 * (results.json, tables.md, and the notes.json it held).
 */
import { execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { CacheKeying, CacheThreshold, chooseCache, defaultCacheKeying } from "../baselines/cache";
import { disposeEnn, ennStepSizes, loadEnn } from "../baselines/enn";
import { disposeKe, loadKe } from "../baselines/ke";
import { DEFAULT_EVAL_CONFIG, evaluateMethods, worldMethodContext } from "../eval/evaluate";
import { buildMethods, cacheMethod, EditMethod, ennMethod, keMethod, mendMethod } from "../eval/methods";
import { loadEditor } from "../extensions/editorExtensions";
import { writeFileDurable } from "../model/durable";
import { disposeParams } from "../model/gpt";
import { checkedFields, field, parseJson, readJsonFile } from "../model/jsonFile";
import { writeFolder } from "../model/checkpointFolder";
import { loadModel, Model } from "../model/modelFolder";
import { disposeEditor, lastBlocksMlp } from "../mend/editor";
import { World } from "../world/world";
import { DEFAULT_MODEL_DIR, PACKAGE_ROOT } from "./common";
import { childEnv } from "./parentWatch";
import { budgetOf, checkedRunResult, evalFileOf, PAPER_BUDGET, PAPER_ROWS, PaperRow, runDirOf, VAL_TARGET_ES } from "./paperRows";
import { checkedRunEval, PAPER_BATCH_SIZES, paperTables, PaperResults, PaperTable, readPaperResults, RunEval, stepsToTarget } from "../eval/paperResults";

/**
 * The rows that need no training: evaluated once (they have no seed). The cache keyed on the
 * representation and layer chosen on validation edits (`cache ε*`, half and twice), and keyed on the
 * last block's residual mean-pooled over the prompt (`... mean-pooled`), the tables' first cache.
 */
export const UNTRAINED_ROWS = ["FT", "FT+KL", "cache ε*", "cache ε*/2", "cache 2ε*", "cache ε* mean-pooled", "cache ε*/2 mean-pooled", "cache 2ε* mean-pooled"] as const;

/**
 * A cache row's keying and its ε* on validation edits: the keying chosen there among mean-pooled and
 * last-token residuals after every block, or (`... mean-pooled`) the last block mean-pooled; with
 * every keying compared.
 */
function cacheKeyingOf(name: string, model: Model, val: ReturnType<World["editRecords"]>): { keying: CacheKeying; eps: CacheThreshold; candidates: (CacheKeying & CacheThreshold)[] } {
  const { candidates } = chooseCache(model, val);
  const want = name.endsWith("mean-pooled") ? defaultCacheKeying(model) : candidates[0];
  const eps = candidates.find((c) => c.pooling === want.pooling && c.layer === want.layer)!;
  return { keying: { pooling: eps.pooling, layer: eps.layer }, eps, candidates };
}

const untrainedFile = (runs: string, name: string) => path.join(runs, `${name.toLowerCase().replace(/ε\*/g, "eps").replace(/[^a-z0-9]+/g, "-")}.eval.json`);

/** A trained run's training: its result and, from its trainer state, every validation. */
function trainingOf(runs: string, row: PaperRow, seed: number): NonNullable<RunEval["train"]> {
  const dir = runDirOf(runs, row, seed);
  const result = checkedRunResult(readJsonFile(`${dir}.json`), `${dir}.json`);
  const stateFile = path.join(dir, "last", "trainer_state.json");
  const state = checkedFields<{ history: { step: number; elapsedSec: number; val?: { editAcc: number; lossEdit: number } }[] }>(readJsonFile(stateFile), stateFile, { history: field.list });
  state.history.forEach((h, i) => {
    checkedFields(h, stateFile, { step: field.count, elapsedSec: field.number, val: field.optional(field.object) }, `history[${i}].`);
    if (h.val) checkedFields(h.val, stateFile, { editAcc: field.number, lossEdit: field.number }, `history[${i}].val.`);
  });
  const t = stepsToTarget(state.history, VAL_TARGET_ES);
  const val_history = state.history.flatMap((h) => (h.val ? [{ step: h.step, es: h.val.editAcc, loss_edit: h.val.lossEdit }] : []));
  return { steps: result.steps, elapsed_sec: result.elapsed_sec, stopped_by: result.stopped_by, steps_to_target: t.steps, sec_to_target: t.sec, best_val_es: t.best, val_history };
}

/** Evaluate one trained (row, seed), or one untrained row (seed null), in this process. */
export function evaluateOne(runs: string, name: string, seed: number | null): RunEval {
  const t0 = performance.now();
  const model: Model = loadModel(DEFAULT_MODEL_DIR);
  const world = World.load();
  const records = world.editRecords("test");
  const row = PAPER_ROWS.find((r) => r.name === name);
  const cfg = { ...DEFAULT_EVAL_CONFIG, sequential: 0, heatmapEdits: 0, batchSizes: row && (row.table === "batched" || ["MEND", "ENN"].includes(row.name)) ? PAPER_BATCH_SIZES : [] };
  let method: EditMethod;
  let release = () => {};
  let cache: RunEval["cache"];
  let stepSizes: RunEval["step_sizes"];
  try {
    if (row) {
      if (seed === null) throw new Error(`row ${name} is trained: it needs a seed`);
      const dir = path.join(runDirOf(runs, row, seed), "editor");
      const kind = row.flags.includes("--kind") ? row.flags[row.flags.indexOf("--kind") + 1] : "MEND";
      if (kind === "KE") {
        const ke = loadKe(dir, model);
        method = keMethod(ke, name);
        release = () => disposeKe(ke);
      } else if (kind === "ENN") {
        const enn = loadEnn(dir, model);
        stepSizes = ennStepSizes(enn);
        method = ennMethod(enn, name);
        release = () => disposeEnn(enn);
      } else {
        const editor = loadEditor(dir, model.config, model.params);
        method = mendMethod(editor, name);
        release = () => disposeEditor(editor);
      }
    } else if (name.startsWith("cache")) {
      const { keying, eps, candidates } = cacheKeyingOf(name, model, world.editRecords("val"));
      const threshold = name.startsWith("cache ε*/2") ? eps.threshold / 2 : name.startsWith("cache 2ε*") ? eps.threshold * 2 : eps.threshold;
      cache = { threshold, eps_star: eps.threshold, val_paraphrase_hits: eps.paraphraseHits, val_locality_misses: eps.localityMisses, keying, candidates: candidates.map((c) => ({ pooling: c.pooling, layer: c.layer, eps_star: c.threshold, val_paraphrase_hits: c.paraphraseHits, val_locality_misses: c.localityMisses })) };
      method = cacheMethod(threshold, name, keying);
    } else {
      [method] = buildMethods([name], { innerParams: lastBlocksMlp(model.config.n_layer), ...worldMethodContext(world, model) });
    }
    const r = evaluateMethods(model, world, [method], records, cfg);
    method.dispose?.();
    const out: RunEval = { row: name, seed, summary: r.methods[name], batched: r.batched[name] ?? [], elapsed_sec: 0 };
    if (cache) out.cache = cache;
    if (stepSizes) out.step_sizes = stepSizes;
    if (row && seed !== null) out.train = trainingOf(runs, row, seed);
    out.elapsed_sec = (performance.now() - t0) / 1000;
    return out;
  } finally {
    release();
    disposeParams(model.params);
  }
}

/** Evaluate `name` (and seed) in a child process; its result is written beside the run by the child. */
function evaluateInChild(runs: string, name: string, seed: number | null, file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const args = ["paper", "--one", name, "--runs", runs, ...(seed === null ? [] : ["--seeds", String(seed)])];
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, "bin", "mend.js"), ...args], { cwd: PACKAGE_ROOT, stdio: ["ignore", "ignore", "pipe"], env: childEnv() });
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.on("close", (code) => {
      if (code !== 0) console.error(`evaluation of ${name}${seed === null ? "" : `, seed ${seed}`} failed:\n${err.trim()}`);
      resolve(code === 0 && fs.existsSync(file));
    });
  });
}

/** `mend paper --one NAME`: evaluate one row (and seed) here and keep its result beside the run. */
export function evaluateOneToFile(runs: string, name: string, seed: number | null): void {
  const row = PAPER_ROWS.find((r) => r.name === name);
  if (!row && !(UNTRAINED_ROWS as readonly string[]).includes(name)) throw new Error(`unknown row "${name}"; the rows are ${[...PAPER_ROWS.map((r) => r.name), ...UNTRAINED_ROWS].join(", ")}`);
  const r = evaluateOne(runs, name, seed);
  writeFileDurable(row && seed !== null ? evalFileOf(runs, row, seed) : untrainedFile(runs, name), JSON.stringify(r, null, 1) + "\n");
}

/** The git commit of the package, if it is a checkout. */
function commitOf(): string | null {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: PACKAGE_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

/**
 * Evaluate what is not yet evaluated (`jobs` at a time), then write results.json and tables.md to
 * `out`. `untrained`: the untrained rows to include (default all). With `merge`, rows of `out`'s
 * results.json not evaluated here are kept as they are (each row carries its own date and commit).
 */
export async function evaluatePaper(runs: string, rows: readonly PaperRow[], seeds: readonly number[], out: string, jobs = 2, guard: () => void = () => {}, opts: { untrained?: readonly string[]; merge?: boolean } = {}): Promise<PaperResults> {
  const untrained = opts.untrained ?? UNTRAINED_ROWS;
  const todo: { name: string; seed: number | null; file: string }[] = [];
  for (const s of seeds) for (const r of rows) todo.push({ name: r.name, seed: s, file: evalFileOf(runs, r, s) });
  for (const n of untrained) todo.push({ name: n, seed: null, file: untrainedFile(runs, n) });
  const missing = todo.filter((t) => !fs.existsSync(t.file));
  const trainedMissing = missing.filter((t) => t.seed !== null && !fs.existsSync(`${runDirOf(runs, PAPER_ROWS.find((r) => r.name === t.name)!, t.seed)}.json`));
  if (trainedMissing.length) throw new Error(`not trained yet: ${trainedMissing.map((t) => `${t.name} seed ${t.seed}`).join(", ")} (run \`mend paper --stage train\` first)`);
  const resultsFile = path.join(out, "results.json");
  const previous = opts.merge && fs.existsSync(resultsFile) ? readPaperResults(resultsFile) : null;
  let next = 0;
  let done = 0;
  const t0 = Date.now();
  const failed: string[] = [];
  const worker = async () => {
    while (next < missing.length) {
      const t = missing[next++];
      const ok = await evaluateInChild(runs, t.name, t.seed, t.file);
      if (!ok) failed.push(`${t.name}${t.seed === null ? "" : ` seed ${t.seed}`}`);
      console.error(`[evaluated ${++done}/${missing.length}, ${((Date.now() - t0) / 1000).toFixed(0)} s] ${t.name}${t.seed === null ? "" : `, seed ${t.seed}`}${ok ? "" : ": failed"}`);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, missing.length)) }, worker));
  if (failed.length) throw new Error(`${failed.length} evaluation(s) failed: ${failed.join(", ")}`);
  const date = new Date().toISOString().slice(0, 10);
  const commit = commitOf();
  const fresh: PaperResults["rows"] = [...rows.map((r) => r.name), ...untrained].map((n) => {
    const row = rows.find((r) => r.name === n);
    return {
      name: n,
      table: row?.table ?? (n.startsWith("cache") ? "cache" : "main"),
      what: row?.what ?? (n.startsWith("cache") ? "answers from the nearest cached edit within the threshold" : "fine-tuning of the edited weights"),
      date,
      commit,
      ...(row ? { budget: budgetOf(row) } : {}),
      runs: todo.filter((t) => t.name === n).map((t) => {
        const r = checkedRunEval(readJsonFile(t.file), t.file);
        return row && t.seed !== null ? { ...r, train: trainingOf(runs, row, t.seed) } : r; // the training as the run folder has it now
      }),
    };
  });
  // every row in one canonical order: the trained rows as PAPER_ROWS lists them, then the untrained ones
  const order = [...PAPER_ROWS.map((r) => r.name), ...UNTRAINED_ROWS] as string[];
  const kept = (previous?.rows ?? []).filter((r) => !fresh.some((f) => f.name === r.name)).map((r) => ({ date: previous!.date, commit: previous!.commit, ...r }));
  const all = [...kept, ...fresh].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  const res: PaperResults = {
    date,
    commit,
    budget: PAPER_BUDGET,
    val_target_es: VAL_TARGET_ES,
    n_test: 0,
    rows: all,
  };
  res.n_test = res.rows[0]?.runs[0]?.summary.n_edits ?? 0;
  // notes.json (hand-written, in the tables folder): per table, where ours and the paper's disagree and why
  const notesFile = path.join(out, "notes.json");
  const notesText = fs.existsSync(notesFile) ? fs.readFileSync(notesFile, "utf8") : null;
  const notes = notesText === null ? {} : (parseJson(notesText, notesFile) as Partial<Record<PaperTable, string>>);
  const files: Record<string, string> = { "results.json": JSON.stringify(res, null, 1) + "\n", "tables.md": paperTables(res, notes) + "\n", ...(notesText === null ? {} : { "notes.json": notesText }) };
  writeFolder(out, "paper-tables", files, { check: guard });
  console.error(`wrote ${path.join(out, "results.json")} and tables.md`);
  return res;
}
