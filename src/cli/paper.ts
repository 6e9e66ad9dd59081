/**
 * `mend paper`: the MEND paper's comparisons in miniature on the facts world. It trains every
 * learned row the tables need (MEND, its ablations, MEND on attention weights and trained on
 * batches, KE, ENN; three seeds each, one shared step and time budget) as `mend train-editor` runs
 * under runs/paper/, continuing an interrupted run and skipping finished ones, then evaluates them
 * with FT, FT+KL and the cache on the test split and writes the tables folder (results.json,
 * tables.md, the notes.json it found there), as one unit: by default runs/paper/tables; the shipped
 * docs/paper is replaced only when named with --force. Training takes hours on a CPU: it runs with
 * progress, `--jobs` at a time; `--stage eval` only evaluates what has been trained.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";
import { FORCE_FLAG, guardOutput, PACKAGE_ROOT } from "./common";
import { childEnv } from "./parentWatch";
import { initBackend } from "../model/backend";
import { readJsonFile } from "../model/jsonFile";
import { writeFileDurable } from "../model/durable";
import { budgetOf, checkedRunResult, evalFileOf, PAPER_BUDGET, PAPER_ROWS, PaperRow, RowBudget, RunResult, runDirOf } from "./paperRows";

export const spec: CommandSpec = {
  name: "paper",
  summary: "the paper's tables in miniature: train every row (3 seeds, background-friendly, resumable), evaluate, write docs/paper/",
  flags: [
    { name: "stage", type: "string", value: "S", help: "train the missing rows, evaluate, or both", choices: ["train", "eval", "all"], default: "all" },
    { name: "seeds", type: "ints", value: "S,...", help: "seeds of every trained row", default: "1,2,3", min: 0 },
    { name: "jobs", type: "int", value: "N", help: "training runs (and evaluations) at a time", default: 2, min: 1 },
    { name: "rows", type: "strings", value: "A,B,...", help: "only these rows (names as in docs/paper); the tables folder's other rows are kept as they were" },
    { name: "runs", type: "string", value: "DIR", help: "where the training runs go", default: "runs/paper" },
    { name: "out", type: "string", value: "DIR", help: "the tables folder (results.json, tables.md; its notes.json is kept)", default: "RUNS/tables" },
    FORCE_FLAG,
    { name: "one", type: "string", value: "ROW", help: "(internal) evaluate one row (with one of --seeds) in this process, beside its run", advanced: true },
  ],
  notes: [
    `Every trained row: ${PAPER_BUDGET.steps} steps (no early stop), at most ${PAPER_BUDGET.timeBudgetSec} s, rank ${PAPER_BUDGET.rank} for MEND's nets, --per-fact ${PAPER_BUDGET.perFact} --loc-per-edit ${PAPER_BUDGET.locPerEdit}; except the rows with a budget of their own: ${PAPER_ROWS.filter((r) => r.budget).map((r) => `${r.name} (${r.budget!.steps} steps, ${r.budget!.timeBudgetSec} s, patience ${r.budget!.patience})`).join(", ")}.`,
  ],
};

interface RunOutcome {
  row: string;
  seed: number;
  dir: string;
  ok: boolean;
  summary?: RunResult;
}

/**
 * Whether a finished run stopped on a time or step budget smaller than the row's budget now (a row
 * whose budget was raised): such a run is continued from its `last` checkpoint, not retrained.
 */
export function stoppedShortOf(r: RunResult, b: RowBudget): boolean {
  if (r.stopped_by === "time budget") return r.elapsed_sec < b.timeBudgetSec && r.steps < b.steps;
  if (r.stopped_by === "steps") return r.steps < b.steps;
  return false;
}

/** One `mend train-editor` run as a child process; continues an interrupted run; its result JSON is kept beside it. */
function trainOne(runs: string, row: PaperRow, seed: number): Promise<RunOutcome> {
  const dir = runDirOf(runs, row, seed);
  const result = `${dir}.json`;
  const b = budgetOf(row);
  if (fs.existsSync(result)) {
    const summary = checkedRunResult(readJsonFile(result), result);
    if (!stoppedShortOf(summary, b)) return Promise.resolve({ row: row.name, seed, dir, ok: true, summary });
    fs.rmSync(evalFileOf(runs, row, seed), { force: true }); // the evaluation of the shorter run
  }
  const resume = fs.existsSync(path.join(dir, "last", "trainer_state.json"));
  const budget = ["--steps", String(b.steps), "--time-budget", String(b.timeBudgetSec)];
  const args = resume
    ? ["train-editor", "--resume", "--run-dir", dir, ...budget]
    : ["train-editor", "--run-dir", dir, "--seed", String(seed), ...budget, "--patience", String(b.patience), "--per-fact", String(PAPER_BUDGET.perFact), "--loc-per-edit", String(PAPER_BUDGET.locPerEdit), ...(row.flags.includes("--kind") ? [] : ["--rank", String(PAPER_BUDGET.rank)]), ...row.flags];
  const log = fs.openSync(`${dir}.log`, "a");
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, "bin", "mend.js"), ...args], { cwd: PACKAGE_ROOT, stdio: ["ignore", "pipe", log], env: childEnv() });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.on("close", (code) => {
      fs.closeSync(log);
      if (code !== 0) return resolve({ row: row.name, seed, dir, ok: false });
      try {
        const summary = checkedRunResult(JSON.parse(out), `the output of mend ${args.join(" ")}`);
        writeFileDurable(result, JSON.stringify(summary, null, 1) + "\n");
        resolve({ row: row.name, seed, dir, ok: true, summary });
      } catch {
        resolve({ row: row.name, seed, dir, ok: false });
      }
    });
  });
}

/** Train every (row, seed) not yet trained, `jobs` at a time, printing each as it ends. */
export async function trainRows(runs: string, rows: readonly PaperRow[], seeds: readonly number[], jobs: number): Promise<RunOutcome[]> {
  fs.mkdirSync(runs, { recursive: true });
  const todo = seeds.flatMap((s) => rows.map((r) => ({ r, s }))); // seed by seed: an early stop leaves every row with a seed
  const done: RunOutcome[] = [];
  let next = 0;
  const t0 = Date.now();
  const worker = async () => {
    while (next < todo.length) {
      const { r, s } = todo[next++];
      const o = await trainOne(runs, r, s);
      done.push(o);
      const secs = ((Date.now() - t0) / 1000).toFixed(0);
      console.error(`[${done.length}/${todo.length}, ${secs} s] ${r.name}, seed ${s}: ${o.ok ? `trained (${o.summary!.steps} steps, ${Math.round(o.summary!.elapsed_sec)} s)` : `failed: see ${o.dir}.log`}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, todo.length) }, worker));
  return done;
}

export async function run(f: Flags): Promise<void> {
  const stage = flagString(f, "stage") ?? "all";
  const seeds = (f.seeds as number[] | undefined) ?? [1, 2, 3];
  const twice = seeds.filter((s, i) => seeds.indexOf(s) !== i);
  if (twice.length) throw new Error(`--seeds ${seeds.join(",")} names seed ${twice[0]} more than once: each seed is one run of every row`);
  const runs = path.resolve(flagString(f, "runs") ?? path.join(PACKAGE_ROOT, "runs", "paper"));
  if (fs.existsSync(runs) && !fs.statSync(runs).isDirectory()) throw new Error(`--runs ${flagString(f, "runs")}: a file, not a folder for the training runs`);
  const one = flagString(f, "one");
  if (one !== undefined) {
    await initBackend();
    const { evaluateOneToFile } = await import("./paperTables");
    return evaluateOneToFile(runs, one, PAPER_ROWS.some((r) => r.name === one) ? seeds[0] : null);
  }
  const wanted = f.rows as string[] | undefined;
  const { UNTRAINED_ROWS } = await import("./paperTables");
  const known = [...PAPER_ROWS.map((r) => r.name), ...UNTRAINED_ROWS] as string[];
  const unknown = (wanted ?? []).filter((n) => !known.includes(n));
  if (unknown.length) throw new Error(`unknown row(s) ${unknown.map((n) => JSON.stringify(n)).join(", ")}; the rows are ${known.map((n) => JSON.stringify(n)).join(", ")}`);
  const rows = wanted ? PAPER_ROWS.filter((r) => wanted.includes(r.name)) : PAPER_ROWS;
  const untrained = wanted ? UNTRAINED_ROWS.filter((n) => wanted.includes(n)) : UNTRAINED_ROWS;
  const out = path.resolve(flagString(f, "out") ?? path.join(runs, "tables"));
  // --rows merges into the tables folder, keeping its other rows: a tables folder there is not lost, so it needs no --force
  const guard = () => guardOutput(out, "paper-tables", { force: flagBool(f, "force"), replaceSameKind: wanted !== undefined });
  if (stage !== "train") guard(); // before hours of training
  if (stage !== "eval") {
    const outcomes = await trainRows(runs, rows, seeds, flagNumber(f, "jobs") ?? 2);
    const failed = outcomes.filter((o) => !o.ok);
    if (failed.length) throw new Error(`${failed.length} training run(s) failed: ${failed.map((o) => `${o.row} seed ${o.seed} (${o.dir}.log)`).join(", ")}`);
  }
  if (stage !== "train") {
    const { evaluatePaper } = await import("./paperTables");
    await initBackend();
    await evaluatePaper(runs, rows, seeds, out, flagNumber(f, "jobs") ?? 2, guard, { untrained, merge: wanted !== undefined });
  }
}
