/** `mend paper`'s statistics and tables (src/eval/paperResults.ts) and its command's errors. */
import test from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { batchedPoint, formatInterval, meanInterval, meanValidationCurve, paperTables, PaperResults, RunEval, stepsToTarget } from "../dist/eval/paperResults";
import { ROOT } from "./helpers";
import { stoppedShortOf } from "../dist/cli/paper";

test("the paper tables' 95% interval is Student's t over seeds, and steps to the validation target come from the history", () => {
  const r = meanInterval([1, 2, 3]);
  assert.equal(r.mean, 2);
  assert.ok(Math.abs(r.half! - 4.303 / Math.sqrt(3)) < 1e-9); // sd 1, t(2) = 4.303
  assert.equal(meanInterval([0.5]).half, null);
  assert.equal(formatInterval([0.5]), "0.500");
  assert.equal(formatInterval([1, 2, 3], 2), "2.00 ± 2.48");
  const h = [
    { step: 50, elapsedSec: 10, val: { editAcc: 0.5 } },
    { step: 100, elapsedSec: 20, val: { editAcc: 0.92 } },
    { step: 150, elapsedSec: 30, val: { editAcc: 0.95 } },
  ];
  assert.deepEqual(stepsToTarget(h, 0.9), { steps: 100, sec: 20, best: 0.95 });
  assert.deepEqual(stepsToTarget(h, 0.99), { steps: null, sec: null, best: 0.95 });
});

/** A run of a row with the given ES and paraphrase score (other metrics fixed). */
function run(row: string, seed: number | null, es: number, para: number): RunEval {
  const loc = { overall: 0.9, same_subject: 0.9, same_relation: 0.8, unrelated: 1, same_relation_same_answer: 0.5 };
  return {
    row,
    seed,
    summary: { es, paraphrase: para, es_paper: es, reliability_token: es, generalization_token: para, locality: loc, locality_token: 0.9, kl: loc, acc_dd: 0.01, ppl_dd: 0.02, magnitude: { edit: 0.5, paraphrase: 0.4, locality: 0.8 }, latency_ms: 20, n_edits: 10 },
    batched: [{ k: 1, es: 1, paraphrase: para, locality: 0.9, acc_dd: 0.5, n_batches: 2 }, { k: 5, es: 0.2, paraphrase: para, locality: 0.9, acc_dd: 0.3, n_batches: 2 }],
    train: { steps: 300, elapsed_sec: 100, stopped_by: "steps", steps_to_target: seed === 3 ? null : 100, sec_to_target: 30, best_val_es: 0.95, val_history: [{ step: 50, es: 0.5, loss_edit: 2 }, { step: 100, es: seed === 3 ? 0.7 : 0.95, loss_edit: 1 }] },
    elapsed_sec: 1,
  };
}

test("the tables put each row's mean ± interval over its seeds beside the paper's numbers, and count the seeds that reached the target", () => {
  const res: PaperResults = {
    date: "2026-12-06",
    commit: "0123456789abcdef",
    budget: { steps: 300, timeBudgetSec: 900 },
    val_target_es: 0.9,
    n_test: 10,
    rows: [
      { name: "MEND", table: "main", what: "", runs: [run("MEND", 1, 1, 0.9), run("MEND", 2, 0.9, 0.8), run("MEND", 3, 0.8, 0.7)] },
      { name: "no norm", table: "ablation", what: "", runs: [run("no norm", 1, 0.1, 0.1)] },
    ],
  };
  const md = paperTables(res);
  assert.match(md, /at commit 0123456/);
  assert.match(md, /300 steps at most and 900 s/);
  // MEND's ES: mean 0.9, sd 0.1, t(2) 4.303: half-width 0.248
  assert.match(md, /\| MEND \| 1,2,3 \| 0\.900 ± 0\.248 \| 0\.800 ± 0\.248 \|/);
  assert.match(md, /0\.98 \/ 0\.002/, "the paper's zsRE MEND row");
  assert.match(md, /\| no norm \| 1 \| 0\.100 \|/, "one seed: no interval");
  assert.match(md, /\| 100 ± 0 \(2 of 3 reached\) \|/, "steps to the target: the mean over the seeds that reached it");
  assert.match(md, /0\.02 \/ 0\.370/, "the paper's no-norm ablation");
  // k = 1 is the single-edit evaluation (every test edit), larger k the batched calls
  assert.deepEqual(batchedPoint(res.rows[0].runs[1], 1), { es: 0.9, acc_dd: 0.01 });
  assert.deepEqual(batchedPoint(res.rows[0].runs[1], 5), { es: 0.2, acc_dd: 0.3 });
  assert.equal(batchedPoint(res.rows[0].runs[1], 25), undefined);
  const curve = meanValidationCurve(res, "MEND");
  assert.deepEqual(curve.steps, [50, 100]);
  assert.ok(Math.abs(curve.es[1] - (0.95 + 0.95 + 0.7) / 3) < 1e-12 && curve.es[0] === 0.5);
  const withNote = paperTables(res, { main: "Ours differ because the model is small." });
  assert.match(withNote, /\| FT\+KL \|[^\n]*\n\nOurs differ because the model is small\.\n\n### Magnitudes/, "a table's note follows it");
});

test("mend paper names unknown rows and refuses to evaluate rows that are not trained", () => {
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), "paper-"));
  const mend = (...a: string[]) => spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), "paper", ...a], { encoding: "utf8", env: { ...process.env, MEND_BACKEND: "wasm" } });
  let r = mend("--rows", "MEND,nope", "--runs", runs);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /unknown row\(s\) "nope"; the rows are "MEND", "KE"/);
  r = mend("--stage", "eval", "--rows", "KE", "--seeds", "1", "--runs", runs, "--out", path.join(runs, "out"));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /not trained yet: KE seed 1 \(run `mend paper --stage train` first\)/);
  assert.equal(fs.existsSync(path.join(runs, "out")), false, "nothing written");
  // a tables folder that holds something is replaced only when named with --force, checked before any work
  const shipped = path.join(runs, "shipped");
  fs.mkdirSync(shipped);
  fs.writeFileSync(path.join(shipped, "notes.json"), "{}");
  r = mend("--rows", "KE", "--seeds", "1", "--runs", runs, "--out", shipped);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /refusing to write the paper-tables to .*shipped: it is a non-empty folder\. Pass --force/);
  assert.equal(fs.existsSync(path.join(runs, "ke-s1")), false, "no training started");
});

test("the shipped docs/paper results load, hold every row with its seeds, and tables.md is what they and notes.json give", async () => {
  const { readPaperResults } = await import("../dist/eval/paperResults");
  const { PAPER_ROWS } = await import("../dist/cli/paperRows");
  const dir = path.join(ROOT, "docs", "paper");
  const { UNTRAINED_ROWS } = await import("../dist/cli/paperTables");
  const res = readPaperResults(path.join(dir, "results.json"));
  const notYetRun: string[] = ["ENN k=25"]; // rows defined but not yet run (docs/deviations.md, "batched edits in mend paper")
  assert.deepEqual(notYetRun.filter((n) => res.rows.some((r) => r.name === n)), [], "a row run since: drop it from notYetRun");
  for (const row of PAPER_ROWS.filter((r) => !notYetRun.includes(r.name))) {
    const runs = res.rows.find((r) => r.name === row.name)?.runs ?? [];
    assert.deepEqual(runs.map((r) => r.seed), [1, 2, 3], `${row.name}: seeds 1-3`);
    for (const r of runs) assert.ok(r.summary.n_edits === res.n_test && r.train && r.train.val_history.length > 0, `${row.name} seed ${r.seed}: evaluated on every test edit, with its training`);
  }
  for (const name of UNTRAINED_ROWS) assert.equal(res.rows.find((r) => r.name === name)?.runs.length, 1, name);
  const notes = JSON.parse(fs.readFileSync(path.join(dir, "notes.json"), "utf8"));
  assert.equal(fs.readFileSync(path.join(dir, "tables.md"), "utf8"), paperTables(res, notes) + "\n");
});

test("mend paper --rows merges: the named rows are evaluated anew, the tables folder's other rows kept with their own date and commit", async () => {
  const { evaluatePaper } = await import("../dist/cli/paperTables");
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), "paper-merge-"));
  const out = path.join(runs, "tables");
  fs.mkdirSync(out);
  const old: PaperResults = { date: "2026-01-02", commit: "aaaaaaa0000", budget: { steps: 300, timeBudgetSec: 900 }, val_target_es: 0.9, n_test: 10, rows: [{ name: "MEND", table: "main", what: "", runs: [run("MEND", 1, 0.9, 0.8)] }] };
  fs.writeFileSync(path.join(out, "results.json"), JSON.stringify(old));
  fs.writeFileSync(path.join(runs, "ft.eval.json"), JSON.stringify(run("FT", null, 1, 0.7)));
  const res = await evaluatePaper(runs, [], [1], out, 1, () => {}, { untrained: ["FT"], merge: true });
  assert.deepEqual(res.rows.map((r) => r.name), ["MEND", "FT"], "canonical order: trained rows, then the untrained");
  assert.equal(res.rows[0].date, "2026-01-02", "the kept row keeps its date");
  assert.notEqual(res.rows[1].date, "2026-01-02");
  const md = fs.readFileSync(path.join(out, "tables.md"), "utf8");
  assert.match(md, /Rows kept from an earlier run: MEND \(2026-01-02 at commit aaaaaaa\)/);
  assert.match(md, /\| FT \| – \| 1\.000 \| 0\.700 \|/);
  // without merge the folder's rows are not carried over
  const alone = await evaluatePaper(runs, [], [1], out, 1, () => {}, { untrained: ["FT"] });
  assert.deepEqual(alone.rows.map((r) => r.name), ["FT"]);
});

test("the tables show a row's own budget, KE's longer curve and the cache's keyings", () => {
  const ke = (seed: number, es: number[]) => ({ ...run("KE long", seed, es[es.length - 1], 0.5), train: { steps: 500, elapsed_sec: 100, stopped_by: "patience", steps_to_target: null, sec_to_target: null, best_val_es: Math.max(...es), val_history: es.map((e, i) => ({ step: 250 * (i + 1), es: e, loss_edit: 10 - i })) } });
  const cache = { ...run("cache ε*", null, 1, 0.9), cache: { threshold: 20, eps_star: 20, val_paraphrase_hits: 1, val_locality_misses: 0.99, keying: { pooling: "last" as const, layer: 3 }, candidates: [{ pooling: "last" as const, layer: 3, eps_star: 20, val_paraphrase_hits: 1, val_locality_misses: 0.99 }, { pooling: "mean" as const, layer: 3, eps_star: 29.5, val_paraphrase_hits: 0.61, val_locality_misses: 0.64 }] } };
  const res: PaperResults = {
    date: "2026-12-07",
    commit: null,
    budget: { steps: 300, timeBudgetSec: 900 },
    val_target_es: 0.9,
    n_test: 10,
    rows: [
      { name: "KE long", table: "main", what: "", budget: { steps: 6000, timeBudgetSec: 2700, patience: 600 }, runs: [ke(1, [0.2, 0.6]), ke(2, [0.4, 0.8])] },
      { name: "ENN official rate", table: "main", what: "", runs: [{ ...run("ENN official rate", 1, 0, 0), step_sizes: { a: 0.0116, b: 0.0117 } }] },
      { name: "cache ε*", table: "cache", what: "", runs: [cache] },
    ],
  };
  const md = paperTables(res);
  assert.match(md, /ENN's learned step sizes λ after training \(initialised at 0\.01\), over seeds and edited weights: ENN official rate 0\.0116-0\.0117\./);
  assert.match(md, /Rows trained under a budget of their own: KE long \(6000 steps at most, 2700 s, stopping after 600 steps without a better validation loss\)/);
  assert.match(md, /\| KE long \| 1,2 \|/);
  assert.match(md, /\| 250 \| 0\.300 \| 10\.00 \|\n\| 500 \| 0\.700 \| 9\.00 \|/, "the mean curve over seeds");
  assert.match(md, /cache ε\*: keyed on block 3's residual at the prompt's last token, the keying with the best validation mean/);
  assert.match(md, /\| block 3's residual mean-pooled over the prompt \| 29\.50 \| 0\.610 \| 0\.640 \|/);
});

test("a run stopped short of a row's raised budget is continued, not taken as finished", () => {
  const b = { steps: 6000, timeBudgetSec: 7200, patience: 600 };
  const r = (steps: number, elapsed_sec: number, stopped_by: "steps" | "patience" | "time budget") => ({ steps, elapsed_sec, stopped_by });
  assert.equal(stoppedShortOf(r(1350, 1558, "time budget"), b), true); // the 25-minute budget it ran under
  assert.equal(stoppedShortOf(r(4000, 7300, "time budget"), b), false); // the budget now, spent
  assert.equal(stoppedShortOf(r(300, 500, "steps"), b), true);
  assert.equal(stoppedShortOf(r(6000, 5000, "steps"), b), false);
  assert.equal(stoppedShortOf(r(2000, 900, "patience"), b), false); // early stopping is final
});
