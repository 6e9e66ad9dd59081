/**
 * The rows of the paper's tables that are trained (MEND, KE, ENN, MEND's ablations as editor
 * structures, MEND on attention weights), the one budget they all train under, and where each
 * (row, seed) run lives.
 */
import * as path from "path";
import { checkedFields, field } from "../model/jsonFile";

/** The shared budget of every trained row (the MEND row's): steps, validation, time. */
export const PAPER_BUDGET = { steps: 300, timeBudgetSec: 900, patience: 300, rank: 320, perFact: 20, locPerEdit: 3 } as const;

/** The validation target whose first step a row reports (the paper: "training time"): validation ES at least this. */
export const VAL_TARGET_ES = 0.9;

/** The attention weights of the last `k` of `nLayer` blocks: GPT-2's fused c_attn (Q, K, V in one [d, 3d] matrix) and c_proj. */
export function lastBlocksAttention(nLayer: number, k = 3): string[] {
  return Array.from({ length: k }, (_, i) => nLayer - k + i).flatMap((b) => [`h.${b}.attn.c_attn.weight`, `h.${b}.attn.c_proj.weight`]);
}

/** A training budget: steps at most, seconds at most (checked at each validation), steps without a better validation loss. */
export interface RowBudget {
  steps: number;
  timeBudgetSec: number;
  patience: number;
}

/** A trained row of the tables: its name, what it is, its `mend train-editor` flags beyond the budget, and its own budget where it has one. */
export interface PaperRow {
  name: string;
  table: "main" | "ablation" | "attention" | "batched";
  what: string;
  flags: string[];
  /** The row's own budget (default: PAPER_BUDGET's, the one every row of the equal-budget comparison shares). */
  budget?: RowBudget;
}

/** The budget a row trains under. */
export function budgetOf(row: PaperRow): RowBudget {
  return row.budget ?? { steps: PAPER_BUDGET.steps, timeBudgetSec: PAPER_BUDGET.timeBudgetSec, patience: PAPER_BUDGET.patience };
}

export const PAPER_ROWS: readonly PaperRow[] = [
  { name: "MEND", table: "main", what: "the official architecture (shared nets on concat(u, δ), normalised, identity init), the last 3 blocks' MLP weights", flags: [] },
  { name: "KE", table: "main", what: "De Cao et al.'s conditioned rank-1 mask and offset on the gradient", flags: ["--kind", "KE"] },
  { name: "ENN", table: "main", what: "one SGD step with learned step sizes; the base model trained to be editable", flags: ["--kind", "ENN", "--lr", "1e-5"] },
  { name: "no sharing", table: "ablation", what: "one editor net per edited weight", flags: ["--shared", "no"] },
  { name: "no norm", table: "ablation", what: "u and δ not normalised", flags: ["--norm", "no"] },
  { name: "no ID init", table: "ablation", what: "Xavier init, no residual", flags: ["--editor-init", "xavier"] },
  { name: "only u", table: "ablation", what: "the nets transform u; δ passes normalised", flags: ["--net", "u"] },
  { name: "only δ", table: "ablation", what: "the nets transform δ; u passes normalised", flags: ["--net", "delta"] },
  { name: "only smaller", table: "ablation", what: "each net transforms the smaller of u and δ", flags: ["--net", "smaller"] },
  { name: "MEND batch-trained", table: "batched", what: "MEND trained on edits of 1, 5 and 25 facts at once (the paper trains one editor per k); 4 calls per step, as checkpoints/editor-batch (10 exceed wasm's 4 GB)", flags: ["--n-edits", "1,5,25", "--accumulate", "4"] },
  {
    name: "MEND k=5",
    table: "batched",
    what: "MEND trained at 5 edits per call with the official loss (one token mean over the call) and recipe (10 calls per step), as the paper trains an editor per k",
    flags: ["--n-edits", "5"],
    budget: { steps: 300, timeBudgetSec: 2700, patience: 300 },
  },
  {
    name: "MEND k=25",
    table: "batched",
    what: "MEND trained at 25 edits per call with the official loss and recipe (10 calls per step, run 2 calls per pass to fit wasm's 4 GB)",
    flags: ["--n-edits", "25", "--calls-per-pass", "2"],
    budget: { steps: 300, timeBudgetSec: 5400, patience: 300 },
  },
  {
    name: "ENN k=5",
    table: "batched",
    what: "ENN trained at 5 edits per call (10 calls per step, one per pass: 0.6 GB where 4 calls in a pass exceed wasm's 4 GB), as the paper trains one editor per k",
    flags: ["--kind", "ENN", "--lr", "1e-5", "--n-edits", "5", "--calls-per-pass", "1"],
    budget: { steps: 300, timeBudgetSec: 2700, patience: 300 },
  },
  {
    name: "ENN k=25",
    table: "batched",
    what: "ENN trained at 25 edits per call (10 calls per step, one per pass: 1.2 GB), as the paper trains one editor per k",
    flags: ["--kind", "ENN", "--lr", "1e-5", "--n-edits", "25", "--calls-per-pass", "1"],
    budget: { steps: 300, timeBudgetSec: 5400, patience: 300 },
  },
  {
    name: "KE long",
    table: "main",
    what: "KE trained until its validation loss stops improving (600 steps without a better one), 6000 steps or 2 hours, instead of the shared 300 steps",
    flags: ["--kind", "KE"],
    budget: { steps: 6000, timeBudgetSec: 7200, patience: 600 },
  },
  {
    name: "ENN official rate",
    table: "main",
    what: "ENN with its step sizes trained as the official trainer trains them: in the main optimiser, at its lr 1e-5",
    flags: ["--kind", "ENN", "--lr", "1e-5", "--edit-lr-lr", "1e-5"],
  },
  { name: "attention", table: "attention", what: "MEND on the attention weights c_attn (fused Q, K, V) and c_proj of the last 3 blocks", flags: ["--inner-params", lastBlocksAttention(4).join(",")] },
];

const slug = (name: string) => name.toLowerCase().replace(/δ/g, "delta").replace(/[^a-z0-9]+/g, "-");

/** The run folder of a row and seed. */
export function runDirOf(runs: string, row: PaperRow, seed: number): string {
  return path.join(runs, `${slug(row.name)}-s${seed}`);
}

/** A trained run's evaluation, kept beside it as `<run>.eval.json` (an interrupted evaluation continues). */
export function evalFileOf(runs: string, row: PaperRow, seed: number): string {
  return `${runDirOf(runs, row, seed)}.eval.json`;
}

/** What `mend train-editor` printed for a run, kept beside it as `<run>.json`. */
export interface RunResult {
  steps: number;
  elapsed_sec: number;
  stopped_by: string;
}

/** A run's result (the file, or the child's output) checked as data; errors name `where` and the field. */
export function checkedRunResult(v: unknown, where: string): RunResult {
  return checkedFields<RunResult>(v, where, { steps: field.count, elapsed_sec: field.number, stopped_by: field.oneOf("steps", "patience", "time budget") });
}
