/**
 * The results of the MEND paper's comparisons in miniature (`mend paper`, docs/paper/): what each
 * evaluated (row, seed) keeps, the statistics over seeds (mean and 95% Student-t interval), the
 * paper's numbers to set beside ours, and the markdown of every table. The notebook "the paper in
 * miniature" reads docs/paper/results.json through these.
 */
import * as fs from "fs";
import type { BatchedPoint, MethodSummary } from "./evaluate";
import { checkedFields, field, readJsonFile } from "../model/jsonFile";

/** Edits per call of the batched table (the paper's Table 5). */
export const PAPER_BATCH_SIZES = [1, 5, 25, 75, 125];

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
  train?: {
    steps: number;
    elapsed_sec: number;
    stopped_by: string;
    steps_to_target: number | null;
    sec_to_target: number | null;
    best_val_es: number;
    /** Every validation of the run: step, validation ES and validation L_edit. */
    val_history: { step: number; es: number; loss_edit: number }[];
  };
  /** The cache's threshold and what it was chosen from: its keying (absent: the last block mean-pooled) and every keying compared on validation. */
  cache?: {
    threshold: number;
    eps_star: number;
    val_paraphrase_hits: number;
    val_locality_misses: number;
    keying?: { pooling: "mean" | "last"; layer: number };
    candidates?: { pooling: "mean" | "last"; layer: number; eps_star: number; val_paraphrase_hits: number; val_locality_misses: number }[];
  };
  /** ENN's learned step sizes λ per edited weight (initialised at 1e-2). */
  step_sizes?: Record<string, number>;
  elapsed_sec: number;
}

/** The first validation at which ES reached `target` (steps, seconds), from the run's trainer state; null if never. */
export function stepsToTarget(history: readonly { step: number; elapsedSec: number; val?: { editAcc: number } }[], target: number): { steps: number | null; sec: number | null; best: number } {
  const hit = history.find((h) => h.val && h.val.editAcc >= target);
  return { steps: hit?.step ?? null, sec: hit?.elapsedSec ?? null, best: Math.max(0, ...history.map((h) => h.val?.editAcc ?? 0)) };
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
  /** The training budget every trained row shared (steps, timeBudgetSec, ...). */
  budget: { steps: number; timeBudgetSec: number } & Record<string, number>;
  val_target_es: number;
  n_test: number;
  /** Each row with the date and commit it was evaluated at and, for a trained row, the budget it trained under. */
  rows: { name: string; table: string; what: string; date?: string; commit?: string | null; budget?: { steps: number; timeBudgetSec: number; patience: number }; runs: RunEval[] }[];
}

/** The tables of `paperTables`, the keys of the sentences (`notes`) that follow each. */
export type PaperTable = "main" | "ke" | "magnitudes" | "batched" | "ablation" | "attention" | "cache";

/** The markdown of every table, ours beside the paper's, each followed by its note (where ours and the paper's disagree, and why). */
export function paperTables(res: PaperResults, notes: Partial<Record<PaperTable, string>> = {}): string {
  const rowRuns = (name: string) => runsOf(res, name);
  const col = (name: string, f: (r: RunEval) => number | null | undefined, digits = 3) => formatInterval(rowRuns(name).map(f).filter((x): x is number => typeof x === "number"), digits);
  const seedsOf = (name: string) => {
    const s = rowRuns(name).map((r) => r.seed);
    return s[0] === null ? "–" : s.join(",");
  };
  const L: string[] = [];
  const note = (key: PaperTable) => {
    if (notes[key]) L.push(notes[key]!.trim(), "");
  };
  const table = (head: string[], rows: string[][]) => L.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`), "");
  L.push("# The MEND paper in miniature: tables", "");
  L.push(`Generated by \`npx mend paper\` on ${res.date}${res.commit ? ` at commit ${res.commit.slice(0, 7)}` : ""}. Facts world, ${res.n_test} test edits (held-out subjects). Each trained row: ${res.budget.steps} steps at most and ${res.budget.timeBudgetSec} s, the same for every row but those named below; mean ± 95% interval (Student t) over the seeds listed. ES: exact match of the new answer on the edit prompt; paraphrases: on held-out templates; locality: answers whose argmax tokens are unchanged; acc DD: accuracy drawdown on locality probes; ppl DD: perplexity drawdown on held-out sentences; margins: P(new) − P(old) on the edit prompt and paraphrases, P(true) − P(new) on locality probes (P = exp mean token log-prob). Paper: ICLR 2022, zsRE on BART-base (ES / acc DD) and Wikitext on distilGPT-2 (ES / ppl DD).`, "");
  const own = res.rows.filter((r) => r.budget && (r.budget.steps !== res.budget.steps || r.budget.timeBudgetSec !== res.budget.timeBudgetSec));
  if (own.length) L.push(`Rows trained under a budget of their own: ${own.map((r) => `${r.name} (${r.budget!.steps} steps at most, ${r.budget!.timeBudgetSec} s, stopping after ${r.budget!.patience} steps without a better validation loss)`).join("; ")}.`, "");
  const other = res.rows.filter((r) => r.date && (r.date !== res.date || (r.commit ?? null) !== (res.commit ?? null)));
  if (other.length) {
    const by = new Map<string, string[]>();
    for (const r of other) {
      const when = `${r.date}${r.commit ? ` at commit ${r.commit.slice(0, 7)}` : ""}`;
      by.set(when, [...(by.get(when) ?? []), r.name]);
    }
    L.push(`Rows kept from an earlier run: ${[...by].map(([when, names]) => `${names.join(", ")} (${when})`).join("; ")}.`, "");
  }
  const present = (names: readonly string[]) => names.filter((n) => rowRuns(n).length > 0 || ["MEND", "KE", "ENN", "FT", "FT+KL"].includes(n));
  const main = present(["MEND", "KE", "KE long", "ENN", "ENN official rate", "FT", "FT+KL"]);
  L.push("## Main comparison (the paper's Table 4)", "");
  table(
    ["method", "seeds", "ES", "paraphrases", "locality", "same subject", "same relation", "unrelated", "acc DD", "ppl DD", "latency ms", "train s", "paper zsRE", "paper Wikitext"],
    main.map((n) => [n, seedsOf(n), col(n, (r) => r.summary.es), col(n, (r) => r.summary.paraphrase), col(n, (r) => r.summary.locality.overall), col(n, (r) => r.summary.locality.same_subject), col(n, (r) => r.summary.locality.same_relation), col(n, (r) => r.summary.locality.unrelated), col(n, (r) => r.summary.acc_dd), col(n, (r) => r.summary.ppl_dd), col(n, (r) => r.summary.latency_ms, 1), col(n, (r) => r.train?.elapsed_sec, 0), ...(PAPER_NUMBERS.main[n.split(" ")[0]] ?? ["", ""])]),
  );
  const lambdas = main.flatMap((n) => {
    const xs = rowRuns(n).flatMap((r) => Object.values(r.step_sizes ?? {}));
    return xs.length ? [`${n} ${Math.min(...xs).toFixed(4)}-${Math.max(...xs).toFixed(4)}`] : [];
  });
  if (lambdas.length) L.push(`ENN's learned step sizes λ after training (initialised at 0.01), over seeds and edited weights: ${lambdas.join("; ")}.`, "");
  note("main");
  if (rowRuns("KE long").length) {
    L.push("### KE trained longer: its validation curve", "");
    const curve = meanValidationCurve(res, "KE long");
    const loss = meanValidationCurve(res, "KE long", (h) => h.loss_edit);
    const steps = curve.steps.filter((st, i) => st % 250 === 0 || i === curve.steps.length - 1);
    L.push(`Mean over seeds ${seedsOf("KE long")} at every 250th step that every seed validated at; each seed's steps and what stopped it: ${rowRuns("KE long").map((r) => `seed ${r.seed} ${r.train?.steps} steps (${r.train?.stopped_by}), best validation ES ${r.train?.best_val_es.toFixed(3)}`).join("; ")}.`, "");
    table(["step", "validation ES", "validation L_edit"], steps.map((st) => [String(st), curve.es[curve.steps.indexOf(st)].toFixed(3), loss.es[loss.steps.indexOf(st)].toFixed(2)]));
    note("ke");
  }
  L.push("### Magnitudes (CounterFact-style margins)", "");
  table(
    ["method", "edit P(new) − P(old)", "paraphrases P(new) − P(old)", "locality P(true) − P(new)"],
    [...main, ...present(["cache ε*", "cache ε* mean-pooled"])].map((n) => [n, col(n, (r) => r.summary.magnitude.edit), col(n, (r) => r.summary.magnitude.paraphrase), col(n, (r) => r.summary.magnitude.locality)]),
  );
  note("magnitudes");
  L.push("## Batched edits (the paper's Table 5): ES at k edits per call", "");
  const batchedRows = present(["MEND", "MEND k=5", "MEND k=25", "MEND batch-trained", "ENN", "ENN k=5", "ENN k=25"]);
  const perK = present(["MEND k=5", "MEND k=25", "ENN k=5", "ENN k=25"]).filter((n) => rowRuns(n).length);
  L.push(`The paper trains and evaluates an editor per k; here the single-edit editors (MEND, ENN)${perK.map((n) => `, the ${n.split(" ")[0]} editor trained at ${n.split(" ")[1]}${n.startsWith("MEND") ? " with the official loss and recipe" : ""}`).join("")} and one MEND editor trained on a mix of 1, 5 and 25 edits per call (ENN trained on that mix ran out of wasm's 4 GB). k = 1 is the single-edit evaluation (every test edit); larger k, at most 4 calls each.`, "");
  table(
    ["method", "seeds", ...PAPER_BATCH_SIZES.map((k) => `k=${k}`), "paper (zsRE)"],
    batchedRows.map((n) => [n, seedsOf(n), ...PAPER_BATCH_SIZES.map((k) => col(n, (r) => batchedPoint(r, k)?.es)), (PAPER_NUMBERS.batched[n.split(" ")[0]] ?? []).join(" / ")]),
  );
  table(
    ["method: acc DD", ...PAPER_BATCH_SIZES.map((k) => `k=${k}`)],
    batchedRows.map((n) => [n, ...PAPER_BATCH_SIZES.map((k) => col(n, (r) => batchedPoint(r, k)?.acc_dd))]),
  );
  note("batched");
  L.push("## Ablations (the paper's Table 6)", "");
  const abl = ["MEND", ...res.rows.filter((r) => r.table === "ablation").map((r) => r.name)];
  table(
    ["editor", "seeds", "ES", "paraphrases", "locality", "ppl DD", "train s", `steps to val ES ≥ ${res.val_target_es}`, "best val ES", "paper Wikitext ES / ppl DD"],
    abl.map((n) => {
      const reached = rowRuns(n).filter((r) => typeof r.train?.steps_to_target === "number").length;
      return [n, seedsOf(n), col(n, (r) => r.summary.es), col(n, (r) => r.summary.paraphrase), col(n, (r) => r.summary.locality.overall), col(n, (r) => r.summary.ppl_dd), col(n, (r) => r.train?.elapsed_sec, 0), `${col(n, (r) => r.train?.steps_to_target ?? undefined, 0)} (${reached} of ${rowRuns(n).length} reached)`, col(n, (r) => r.train?.best_val_es), PAPER_NUMBERS.ablation[n] ?? ""];
    }),
  );
  note("ablation");
  L.push("## Editing attention instead of MLP weights (the paper's Table 9)", "");
  table(
    ["edited weights", "seeds", "ES", "paraphrases", "locality", "ppl DD", "paper ES"],
    [["MEND", "MLP c_fc, c_proj (last 3 blocks)"], ["attention", "attention c_attn, c_proj (last 3 blocks)"]].map(([n, what]) => [what, seedsOf(n), col(n, (r) => r.summary.es), col(n, (r) => r.summary.paraphrase), col(n, (r) => r.summary.locality.overall), col(n, (r) => r.summary.ppl_dd), PAPER_NUMBERS.attention[n]]),
  );
  note("attention");
  L.push("## The cache (the paper's Table 11)", "");
  const keyingText = (k?: { pooling: string; layer: number }) => (k ? (k.pooling === "mean" ? `block ${k.layer}'s residual mean-pooled over the prompt` : `block ${k.layer}'s residual at the prompt's last token`) : "the last block's residual mean-pooled over the prompt");
  for (const n of ["cache ε*", "cache ε* mean-pooled"]) {
    const c = rowRuns(n)[0]?.cache;
    if (c) L.push(`${n}: keyed on ${keyingText(c.keying)}${n === "cache ε*" && c.candidates ? ", the keying with the best validation mean of the two rates below" : ""}; ε* = ${c.eps_star.toFixed(2)}, the validation threshold with the best mean of paraphrase hits (${c.val_paraphrase_hits.toFixed(3)}) and locality misses (${c.val_locality_misses.toFixed(3)}).`, "");
  }
  table(
    ["method", "ES", "paraphrases", "locality", "acc DD", "ppl DD", "paper zsRE", "paper Wikitext"],
    present(["MEND", "cache ε*", "cache ε*/2", "cache 2ε*", "cache ε* mean-pooled", "cache ε*/2 mean-pooled", "cache 2ε* mean-pooled"]).map((n) => [n, col(n, (r) => r.summary.es), col(n, (r) => r.summary.paraphrase), col(n, (r) => r.summary.locality.overall), col(n, (r) => r.summary.acc_dd), col(n, (r) => r.summary.ppl_dd), ...(PAPER_NUMBERS.cache[n.replace(" mean-pooled", "")] ?? ["", ""])]),
  );
  const cands = rowRuns("cache ε*")[0]?.cache?.candidates;
  if (cands) {
    L.push("The keyings compared on the validation split (each at its own ε*):", "");
    table(["keying", "ε*", "paraphrase hits", "locality misses"], cands.map((k) => [keyingText(k), k.eps_star.toFixed(2), k.val_paraphrase_hits.toFixed(3), k.val_locality_misses.toFixed(3)]));
  }
  note("cache");
  return L.join("\n");
}


/** A run's evaluation file checked as data: the fields the tables read (errors name the file and field). */
export function checkedRunEval(v: unknown, file: string): RunEval {
  const r = checkedFields<RunEval>(v, file, { row: field.string, seed: field.orNull(field.integer), summary: field.object, batched: field.list });
  checkedFields(r.summary, file, { n_edits: field.count, es: field.number, paraphrase: field.number, es_paper: field.number, acc_dd: field.number, latency_ms: field.number, locality: field.object }, "summary.");
  return r;
}

/** The results `mend paper` wrote (docs/paper/results.json), checked as data. */
export function readPaperResults(file: string): PaperResults {
  if (!fs.existsSync(file)) throw new Error(`${file}: no paper results; make them with "npx mend paper" (README: The paper in miniature)`);
  const r = checkedFields<PaperResults>(readJsonFile(file), file, { rows: field.list, n_test: field.count, val_target_es: field.number, budget: field.object });
  r.rows.forEach((row, i) => {
    checkedFields(row, file, { name: field.string, table: field.string, what: field.string, runs: field.list }, `rows[${i}].`);
    row.runs.forEach((run, j) => checkedRunEval(run, `${file} rows[${i}].runs[${j}]`));
  });
  return r;
}

/**
 * A run's ES and acc DD at k edits per call: at k = 1 the single-edit evaluation (every test edit),
 * else the batched one (at most a few calls per k); undefined where the run has no such point.
 */
export function batchedPoint(r: RunEval, k: number): { es: number; acc_dd: number } | undefined {
  if (k === 1) return { es: r.summary.es, acc_dd: r.summary.acc_dd };
  const p = r.batched.find((x) => x.k === k);
  return p && { es: p.es, acc_dd: p.acc_dd };
}

/** The runs (one per seed) of a row; empty if the row is absent. */
export function runsOf(res: PaperResults, name: string): RunEval[] {
  return res.rows.find((r) => r.name === name)?.runs ?? [];
}

/** Per row, `pick` of each of its runs (for seedRangeFigure); runs where `pick` gives no number are left out. */
export function seedValues(res: PaperResults, names: readonly string[], pick: (r: RunEval) => number | null | undefined): number[][] {
  return names.map((n) => runsOf(res, n).map(pick).filter((x): x is number => typeof x === "number"));
}

/** One table row per name: each metric's mean ± 95% interval over the row's seeds (for showTable). */
export function intervalRows(res: PaperResults, names: readonly string[], metrics: Record<string, (r: RunEval) => number | null | undefined>): Record<string, string>[] {
  return names.map((n) => ({ row: n, runs: String(runsOf(res, n).length), ...Object.fromEntries(Object.entries(metrics).map(([k, f]) => [k, formatInterval(runsOf(res, n).map(f).filter((x): x is number => typeof x === "number"))])) }));
}

/** A trained row's validation ES (or `pick`) by step, the mean over its seeds at the steps every seed validated at. */
export function meanValidationCurve(res: PaperResults, name: string, pick: (h: { es: number; loss_edit: number }) => number = (h) => h.es): { steps: number[]; es: number[] } {
  const hist = runsOf(res, name).map((r) => r.train?.val_history ?? []);
  if (hist.length === 0 || hist.some((h) => h.length === 0)) return { steps: [], es: [] };
  const steps = hist[0].map((h) => h.step).filter((s) => hist.every((h) => h.some((x) => x.step === s)));
  return { steps, es: steps.map((s) => hist.reduce((a, h) => a + pick(h.find((x) => x.step === s)!), 0) / hist.length) };
}
