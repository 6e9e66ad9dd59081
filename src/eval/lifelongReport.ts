/** The lifelong benchmark's result as a table, its targets and its figures (cli/lifelong.ts, notebook 13). */
import type { LifelongCurve, LifelongPoint } from "./lifelong";
import type { Figure } from "../viz/plots";
import { sweepFigure } from "../viz/figures";
import { readJsonFile } from "../model/jsonFile";

export interface LifelongResult {
  source: string;
  edits: number;
  every: number;
  /** The stream lengths the table reports. */
  report: number[];
  probes: number;
  backend: string;
  seconds: number;
  curves: Record<string, LifelongCurve>;
}

export interface LifelongTarget {
  name: string;
  ok: boolean;
  /** Every method's values, best first. */
  best: string;
}

/** A results.json written by `mend lifelong` (checked to be one). */
export function readLifelongResults(file: string): LifelongResult & { targets: LifelongTarget[] } {
  const r = readJsonFile(file) as LifelongResult & { targets: LifelongTarget[] };
  if (!r || typeof r !== "object" || typeof r.curves !== "object" || !Array.isArray(r.report)) throw new Error(`${file}: not the results.json of mend lifelong`);
  return r;
}

/** A curve's point after `n` edits (undefined when it was not measured there). */
export function pointAt(c: LifelongCurve, n: number): LifelongPoint | undefined {
  return c.points.find((p) => p.edits === n);
}

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "—");

/** One markdown table: a row per reported length and method. */
export function lifelongTable(r: LifelongResult): string {
  const head = "| edits | method | retention | paraphrase | locality | loc. same subject | acc drawdown | ‖ΔW‖/‖W₀‖ | edit time (s) |\n|---|---|---|---|---|---|---|---|---|";
  const rows: string[] = [];
  for (const n of r.report) {
    for (const [m, c] of Object.entries(r.curves)) {
      const p = pointAt(c, n);
      if (!p) continue;
      rows.push(`| ${n} | ${m} | ${f3(p.retention)} | ${f3(p.paraphrase)} | ${f3(p.locality.overall)} | ${f3(p.locality.same_subject)} | ${f3(p.acc_dd)} | ${Number.isFinite(p.weight_growth) ? p.weight_growth.toFixed(2) : "—"} | ${p.edit_seconds.toFixed(1)} |`);
    }
  }
  return `${head}\n${rows.join("\n")}`;
}

/**
 * The facts world's targets: at 100 edits some method keeps retention >= 0.95, paraphrase retention
 * >= 0.90 and locality >= 0.95; at 500, retention >= 0.90 and locality >= 0.90 with the stream
 * edited in <= 300 s. Only the lengths the run reached are checked; none for dataset streams.
 */
export function lifelongTargets(r: LifelongResult): LifelongTarget[] {
  if (!r.source.startsWith("facts world")) return [];
  const out: LifelongTarget[] = [];
  const check = (n: number, name: string, pass: (p: LifelongPoint) => boolean, show: (p: LifelongPoint) => string, score: (p: LifelongPoint) => number) => {
    const rows = Object.entries(r.curves)
      .map(([m, c]) => ({ m, p: pointAt(c, n) }))
      .filter((x): x is { m: string; p: LifelongPoint } => x.p !== undefined)
      .sort((a, b) => score(b.p) - score(a.p));
    if (!rows.length) return;
    out.push({ name, ok: rows.some((x) => pass(x.p)), best: rows.map((x) => `${x.m} ${show(x.p)}`).join("; ") });
  };
  check(
    100,
    "100 edits: retention >= 0.95, paraphrase >= 0.90, locality >= 0.95 (one method)",
    (p) => p.retention >= 0.95 && p.paraphrase >= 0.9 && p.locality.overall >= 0.95,
    (p) => `${f3(p.retention)} / ${f3(p.paraphrase)} / ${f3(p.locality.overall)}`,
    (p) => Math.min(p.retention / 0.95, p.paraphrase / 0.9, p.locality.overall / 0.95),
  );
  check(
    500,
    "500 edits: retention >= 0.90, locality >= 0.90, edited in <= 300 s (one method)",
    (p) => p.retention >= 0.9 && p.locality.overall >= 0.9 && p.edit_seconds <= 300,
    (p) => `${f3(p.retention)} / ${f3(p.locality.overall)} in ${p.edit_seconds.toFixed(0)} s`,
    (p) => Math.min(p.retention / 0.9, p.locality.overall / 0.9, 300 / Math.max(p.edit_seconds, 1e-9)),
  );
  return out;
}

/** Retention, paraphrase retention, locality and weight growth against the number of edits, a line per method. */
export function lifelongFigures(r: LifelongResult): { title: string; fig: Figure }[] {
  const methods = Object.keys(r.curves);
  const x = r.curves[methods[0]]?.points.map((p) => p.edits) ?? [];
  const series = (f: (p: LifelongPoint) => number) => Object.fromEntries(methods.map((m) => [m, r.curves[m].points.map(f)]));
  const fig = (title: string, yTitle: string, f: (p: LifelongPoint) => number, range?: [number, number]) => ({ title, fig: sweepFigure(title, x, series(f), { xTitle: "edits so far", yTitle, ...(range ? { range } : {}) }) });
  return [
    fig("Retention: earlier edits that still hold", "retention", (p) => p.retention, [0, 1.02]),
    fig("Paraphrase retention (held-out templates)", "paraphrase retention", (p) => p.paraphrase, [0, 1.02]),
    fig("Locality: fixed probes whose answer is unchanged", "locality", (p) => p.locality.overall, [0, 1.02]),
    fig("Weight growth", "max ‖W − W₀‖ / ‖W₀‖", (p) => p.weight_growth),
  ];
}
