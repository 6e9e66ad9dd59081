/**
 * The evaluation half of `mend paper`: every trained (row, seed) of PAPER_ROWS, and the rows that
 * need no training (FT, FT+KL, the cache at ε*, half and twice ε*), evaluated on the facts world's test
 * split, each in a process of its own (`--jobs` at a time) whose result is kept beside its run
 * (`<run>.eval.json`, so an interrupted evaluation continues); then the tables: mean and 95%
 * interval over seeds, beside the paper's numbers (PAPER_NUMBERS), written to docs/paper/ as
 * results.json and tables.md.
 */
import { execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { cacheThreshold } from "../baselines/cache";
import { disposeEnn, loadEnn } from "../baselines/enn";
import { disposeKe, loadKe } from "../baselines/ke";
import { BatchedPoint, DEFAULT_EVAL_CONFIG, evaluateMethods, MethodSummary, worldMethodContext } from "../eval/evaluate";
import { buildMethods, cacheMethod, EditMethod, ennMethod, keMethod, mendMethod } from "../eval/methods";
import { loadEditor } from "../extensions/editorExtensions";
import { writeFileDurable } from "../model/durable";
import { disposeParams } from "../model/gpt";
import { readJsonFile } from "../model/jsonFile";
import { loadModel, Model } from "../model/modelFolder";
import { disposeEditor, lastBlocksMlp } from "../mend/editor";
import { World } from "../world/world";
import { DEFAULT_MODEL_DIR, PACKAGE_ROOT } from "./common";
import { PAPER_BUDGET, PAPER_ROWS, PaperRow, runDirOf, VAL_TARGET_ES } from "./paperRows";

/** Edits per call of the batched table (the paper's Table 5). */
export const PAPER_BATCH_SIZES = [1, 5, 25, 75, 125];

/** The rows that need no training: evaluated once (they have no seed). */
export const UNTRAINED_ROWS = ["FT", "FT+KL", "cache ε*", "cache ε*/2", "cache 2ε*"] as const;

/**
 * The paper's numbers (ICLR 2022): [zsRE BART-base, Wikitext distilGPT-2], each [ES, drawdown]
 * (zsRE: accuracy drawdown; Wikitext: perplexity drawdown); null where the paper has no entry.
 * "<0.001" is entered as 0.001; ">0.99" as 0.99 (tables.md prints the paper's text).
 */
export const PAPER_NUMBERS = {
  main: {
    FT: ["0.96 / <0.001", "0.29 / 0.938"],
    "FT+KL": ["0.89 / <0.001", "0.17 / 0.059"],
    ENN: ["0.99 / <0.001", "0.93 / 0.094"],
    KE: ["0.98 / <0.001", "0.25 / 0.595"],
    MEND: ["0.98 / 0.002", "0.86 / 0.225"],
  } as Record<string, [string, string]>,
  batched: { ENN: [0.99, 0.94, 0.35, 0.16, 0.11], MEND: [0.98, 0.97, 0.89, 0.78, 0.67] } as Record<string, number[]>,
  ablation: {
    MEND: "0.86 / 0.225",
    "no sharing": "0.86 / 0.195",
    "no norm": "0.02 / 0.370",
    "no ID init": "0.27 / 0.898",
    "only u": "0.63 / 0.559",
    "only δ": "0.80 / 0.445",
    "only smaller": "0.80 / 0.593",
  } as Record<string, string>,
  attention: { MEND: "0.81-0.89 (MLP, large models)", attention: "0.54-0.78" } as Record<string, string>,
  cache: {
    MEND: ["0.98 / 0.002", "0.86 / 0.225"],
    "cache ε*": ["> 0.99 / 0.002", "0.001 / 0.211"],
    "cache ε*/2": ["0.70 / <0.001", ""],
    "cache 2ε*": ["1.00 / 0.220", ""],
  } as Record<string, [string, string]>,
};

/** What one evaluated (row, seed) keeps: the single-edit summary, the batched points and, for a trained row, its training. */
export interface RunEval {
  row: string;
  seed: number | null;
  summary: MethodSummary;
  batched: BatchedPoint[];
  train?: { steps: number; elapsed_sec: number; stopped_by: string; steps_to_target: number | null; sec_to_target: number | null; best_val_es: number };
  /** The cache's threshold and what it was chosen from. */
  cache?: { threshold: number; eps_star: number; val_paraphrase_hits: number; val_locality_misses: number };
  elapsed_sec: number;
}

const evalFile = (runs: string, row: PaperRow, seed: number) => `${runDirOf(runs, row, seed)}.eval.json`;
const untrainedFile = (runs: string, name: string) => path.join(runs, `${name.toLowerCase().replace(/ε\*/g, "eps").replace(/[^a-z0-9]+/g, "-")}.eval.json`);

/** The first validation at which ES reached VAL_TARGET_ES (steps, seconds), from the run's trainer state; null if never. */
export function stepsToTarget(history: readonly { step: number; elapsedSec: number; val?: { editAcc: number } }[], target = VAL_TARGET_ES): { steps: number | null; sec: number | null; best: number } {
  const hit = history.find((h) => h.val && h.val.editAcc >= target);
  return { steps: hit?.step ?? null, sec: hit?.elapsedSec ?? null, best: Math.max(0, ...history.map((h) => h.val?.editAcc ?? 0)) };
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
        method = ennMethod(enn, name);
        release = () => disposeEnn(enn);
      } else {
        const editor = loadEditor(dir, model.config, model.params);
        method = mendMethod(editor, name);
        release = () => disposeEditor(editor);
      }
    } else if (name.startsWith("cache")) {
      const eps = cacheThreshold(model, world.editRecords("val"));
      const threshold = name === "cache ε*/2" ? eps.threshold / 2 : name === "cache 2ε*" ? eps.threshold * 2 : eps.threshold;
      cache = { threshold, eps_star: eps.threshold, val_paraphrase_hits: eps.paraphraseHits, val_locality_misses: eps.localityMisses };
      method = cacheMethod(threshold, name);
    } else {
      [method] = buildMethods([name], { innerParams: lastBlocksMlp(model.config.n_layer), ...worldMethodContext(world, model) });
    }
    const r = evaluateMethods(model, world, [method], records, cfg);
    method.dispose?.();
    const out: RunEval = { row: name, seed, summary: r.methods[name], batched: r.batched[name] ?? [], elapsed_sec: 0 };
    if (cache) out.cache = cache;
    if (row && seed !== null) {
      const dir = runDirOf(runs, row, seed);
      const result = readJsonFile(`${dir}.json`) as { steps: number; elapsed_sec: number; stopped_by: string };
      const state = readJsonFile(path.join(dir, "last", "trainer_state.json")) as { history: { step: number; elapsedSec: number; val?: { editAcc: number } }[] };
      const t = stepsToTarget(state.history);
      out.train = { steps: result.steps, elapsed_sec: result.elapsed_sec, stopped_by: result.stopped_by, steps_to_target: t.steps, sec_to_target: t.sec, best_val_es: t.best };
    }
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
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, "bin", "mend.js"), ...args], { cwd: PACKAGE_ROOT, stdio: ["ignore", "ignore", "pipe"] });
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
  writeFileDurable(row && seed !== null ? evalFile(runs, row, seed) : untrainedFile(runs, name), JSON.stringify(r, null, 1) + "\n");
}

/** 95% two-sided Student t quantiles by degrees of freedom (1..9). */
const T95 = [NaN, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262];

/** Mean and half-width of the 95% interval over seeds (half-width null for one seed). */
export function meanInterval(xs: readonly number[]): { mean: number; half: number | null; n: number } {
  const n = xs.length;
  const m = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean: m, half: null, n };
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (n - 1));
  return { mean: m, half: (T95[n - 1] ?? 1.96) * (sd / Math.sqrt(n)), n };
}

/** "0.950 ± 0.012" (3 decimals), or "0.950" for one value. */
export function formatInterval(xs: readonly number[], digits = 3): string {
  if (xs.length === 0) return "–";
  const r = meanInterval(xs);
  return r.half === null ? r.mean.toFixed(digits) : `${r.mean.toFixed(digits)} ± ${r.half.toFixed(digits)}`;
}

/** Every result of the tables: per row, its runs. */
export interface PaperResults {
  date: string;
  commit: string | null;
  budget: typeof PAPER_BUDGET;
  val_target_es: number;
  n_test: number;
  rows: { name: string; table: string; what: string; runs: RunEval[] }[];
}

/** The markdown of every table, ours beside the paper's. */
export function paperTables(res: PaperResults): string {
  const runsOf = (name: string) => res.rows.find((r) => r.name === name)?.runs ?? [];
  const col = (name: string, f: (r: RunEval) => number | null | undefined, digits = 3) => formatInterval(runsOf(name).map(f).filter((x): x is number => typeof x === "number"), digits);
  const seedsOf = (name: string) => {
    const s = runsOf(name).map((r) => r.seed);
    return s[0] === null ? "–" : s.join(",");
  };
  const L: string[] = [];
  const table = (head: string[], rows: string[][]) => L.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`), "");
  L.push("# The MEND paper in miniature: tables", "");
  L.push(`Generated by \`npx mend paper\` on ${res.date}${res.commit ? ` at commit ${res.commit.slice(0, 7)}` : ""}. Facts world, ${res.n_test} test edits (held-out subjects). Each trained row: ${PAPER_BUDGET.steps} steps at most and ${PAPER_BUDGET.timeBudgetSec} s, the same for every row; mean ± 95% interval (Student t) over the seeds listed. ES: exact match of the new answer on the edit prompt; paraphrases: on held-out templates; locality: answers whose argmax tokens are unchanged; acc DD: accuracy drawdown on locality probes; ppl DD: perplexity drawdown on held-out sentences; margins: P(new) − P(old) on the edit prompt and paraphrases, P(true) − P(new) on locality probes (P = exp mean token log-prob). Paper: ICLR 2022, zsRE on BART-base (ES / acc DD) and Wikitext on distilGPT-2 (ES / ppl DD).`, "");
  const main = ["MEND", "KE", "ENN", "FT", "FT+KL"];
  L.push("## Main comparison (the paper's Table 4)", "");
  table(
    ["method", "seeds", "ES", "paraphrases", "locality", "same subject", "same relation", "unrelated", "acc DD", "ppl DD", "latency ms", "paper zsRE", "paper Wikitext"],
    main.map((n) => [n, seedsOf(n), col(n, (r) => r.summary.es), col(n, (r) => r.summary.paraphrase), col(n, (r) => r.summary.locality.overall), col(n, (r) => r.summary.locality.same_subject), col(n, (r) => r.summary.locality.same_relation), col(n, (r) => r.summary.locality.unrelated), col(n, (r) => r.summary.acc_dd), col(n, (r) => r.summary.ppl_dd), col(n, (r) => r.summary.latency_ms, 1), ...(PAPER_NUMBERS.main[n] ?? ["", ""])]),
  );
  L.push("### Magnitudes (CounterFact-style margins)", "");
  table(
    ["method", "edit P(new) − P(old)", "paraphrases P(new) − P(old)", "locality P(true) − P(new)"],
    [...main, "cache ε*"].map((n) => [n, col(n, (r) => r.summary.magnitude.edit), col(n, (r) => r.summary.magnitude.paraphrase), col(n, (r) => r.summary.magnitude.locality)]),
  );
  L.push("## Batched edits (the paper's Table 5): ES at k edits per call", "");
  const batchedRows = ["MEND", "MEND batch-trained", "ENN", "ENN batch-trained"];
  L.push("The paper trains and evaluates an editor per k; here the single-edit editors (MEND, ENN) and one editor of each trained on a mix of 1, 5 and 25 edits.", "");
  table(
    ["method", "seeds", ...PAPER_BATCH_SIZES.map((k) => `k=${k}`), "paper (zsRE)"],
    batchedRows.map((n) => [n, seedsOf(n), ...PAPER_BATCH_SIZES.map((k) => col(n, (r) => r.batched.find((p) => p.k === k)?.es)), (PAPER_NUMBERS.batched[n.split(" ")[0]] ?? []).join(" / ")]),
  );
  table(
    ["method: acc DD", ...PAPER_BATCH_SIZES.map((k) => `k=${k}`)],
    batchedRows.map((n) => [n, ...PAPER_BATCH_SIZES.map((k) => col(n, (r) => r.batched.find((p) => p.k === k)?.acc_dd))]),
  );
  L.push("## Ablations (the paper's Table 6)", "");
  const abl = ["MEND", ...PAPER_ROWS.filter((r) => r.table === "ablation").map((r) => r.name)];
  table(
    ["editor", "seeds", "ES", "paraphrases", "locality", "ppl DD", "train s", `steps to val ES ≥ ${VAL_TARGET_ES}`, "best val ES", "paper Wikitext ES / ppl DD"],
    abl.map((n) => {
      const reached = runsOf(n).filter((r) => r.train?.steps_to_target !== null).length;
      return [n, seedsOf(n), col(n, (r) => r.summary.es), col(n, (r) => r.summary.paraphrase), col(n, (r) => r.summary.locality.overall), col(n, (r) => r.summary.ppl_dd), col(n, (r) => r.train?.elapsed_sec, 0), `${col(n, (r) => r.train?.steps_to_target ?? undefined, 0)} (${reached} of ${runsOf(n).length} reached)`, col(n, (r) => r.train?.best_val_es), PAPER_NUMBERS.ablation[n] ?? ""];
    }),
  );
  L.push("## Editing attention instead of MLP weights (the paper's Table 9)", "");
  table(
    ["edited weights", "seeds", "ES", "paraphrases", "locality", "ppl DD", "paper ES"],
    [["MEND", "MLP c_fc, c_proj (last 3 blocks)"], ["attention", "attention c_attn, c_proj (last 3 blocks)"]].map(([n, what]) => [what, seedsOf(n), col(n, (r) => r.summary.es), col(n, (r) => r.summary.paraphrase), col(n, (r) => r.summary.locality.overall), col(n, (r) => r.summary.ppl_dd), PAPER_NUMBERS.attention[n]]),
  );
  L.push("## The cache (the paper's Table 11)", "");
  const c = runsOf("cache ε*")[0]?.cache;
  if (c) L.push(`ε* = ${c.eps_star.toFixed(2)}: on the validation split, the threshold with the best mean of paraphrase hits (${c.val_paraphrase_hits.toFixed(3)}) and locality misses (${c.val_locality_misses.toFixed(3)}).`, "");
  table(
    ["method", "ES", "paraphrases", "locality", "acc DD", "ppl DD", "paper zsRE", "paper Wikitext"],
    ["MEND", "cache ε*", "cache ε*/2", "cache 2ε*"].map((n) => [n, col(n, (r) => r.summary.es), col(n, (r) => r.summary.paraphrase), col(n, (r) => r.summary.locality.overall), col(n, (r) => r.summary.acc_dd), col(n, (r) => r.summary.ppl_dd), ...(PAPER_NUMBERS.cache[n] ?? ["", ""])]),
  );
  return L.join("\n");
}

/** The git commit of the package, if it is a checkout. */
function commitOf(): string | null {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: PACKAGE_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

/** Evaluate what is not yet evaluated (`jobs` at a time), then write results.json and tables.md to `out`. */
export async function evaluatePaper(runs: string, rows: readonly PaperRow[], seeds: readonly number[], out: string, jobs = 2): Promise<PaperResults> {
  const todo: { name: string; seed: number | null; file: string }[] = [];
  for (const s of seeds) for (const r of rows) todo.push({ name: r.name, seed: s, file: evalFile(runs, r, s) });
  for (const n of UNTRAINED_ROWS) todo.push({ name: n, seed: null, file: untrainedFile(runs, n) });
  const missing = todo.filter((t) => !fs.existsSync(t.file));
  const trainedMissing = missing.filter((t) => t.seed !== null && !fs.existsSync(`${runDirOf(runs, PAPER_ROWS.find((r) => r.name === t.name)!, t.seed)}.json`));
  if (trainedMissing.length) throw new Error(`not trained yet: ${trainedMissing.map((t) => `${t.name} seed ${t.seed}`).join(", ")} (run \`mend paper --stage train\` first)`);
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
  const names = [...rows.map((r) => r.name), ...UNTRAINED_ROWS];
  const res: PaperResults = {
    date: new Date().toISOString().slice(0, 10),
    commit: commitOf(),
    budget: PAPER_BUDGET,
    val_target_es: VAL_TARGET_ES,
    n_test: 0,
    rows: names.map((n) => {
      const row = rows.find((r) => r.name === n);
      const files = todo.filter((t) => t.name === n).map((t) => t.file);
      return { name: n, table: row?.table ?? (n.startsWith("cache") ? "cache" : "main"), what: row?.what ?? (n.startsWith("cache") ? "answers from the nearest cached edit within the threshold" : "fine-tuning of the edited weights"), runs: files.map((f) => readJsonFile(f) as RunEval) };
    }),
  };
  res.n_test = res.rows[0]?.runs[0]?.summary.n_edits ?? 0;
  fs.mkdirSync(out, { recursive: true });
  writeFileDurable(path.join(out, "results.json"), JSON.stringify(res, null, 1) + "\n");
  writeFileDurable(path.join(out, "tables.md"), paperTables(res) + "\n");
  console.error(`wrote ${path.join(out, "results.json")} and tables.md`);
  return res;
}
