/**
 * Plotly figure specs ({data, layout}) for the evaluation results, and the offline HTML report
 * (plotly.js inlined once, so the file opens without a network). The same specs are shown in the
 * notebooks by display.ts.
 */
import * as fs from "fs";
import { EvalResult, MethodSummary } from "../eval/evaluate";
import { LOCALITY_CLASSES } from "../datasets/editRecord";
import { escapeHtml, scriptJson } from "./escape";

export interface Figure {
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
}

const COLORS: Record<string, string> = { MEND: "#1f77b4", FT: "#d62728", "FT+KL": "#ff7f0e" };
const color = (name: string, i: number) => COLORS[name] ?? ["#2ca02c", "#9467bd", "#8c564b"][i % 3];
const base = (title: string, extra: Record<string, unknown> = {}) => ({ title: { text: title }, template: "plotly_white", margin: { t: 50, l: 60, r: 20, b: 60 }, ...extra });

/** Grouped bars: ES, held-out paraphrase ES and locality per method. */
export function summaryFigure(methods: Record<string, MethodSummary>): Figure {
  const metrics: [string, (m: MethodSummary) => number][] = [
    ["edit success", (m) => m.es],
    ["held-out paraphrases", (m) => m.paraphrase],
    ["locality unchanged", (m) => m.locality.overall],
    ["same subject, other relation", (m) => m.locality.same_subject],
  ];
  return {
    data: Object.entries(methods).map(([name, m], i) => ({ type: "bar", name, x: metrics.map((x) => x[0]), y: metrics.map((x) => x[1](m)), marker: { color: color(name, i) } })),
    layout: base("MEND vs fine-tuning on the same test edits", { barmode: "group", yaxis: { range: [0, 1.05], title: { text: "fraction" } } }),
  };
}

/** Box plots of the change in the original answer's probability, per locality class and method. */
export function driftFigure(drift: EvalResult["drift"], key: "dProb" | "kl" = "dProb"): Figure {
  return {
    data: Object.entries(drift).map(([name, pts], i) => ({
      type: "box",
      name,
      x: pts.map((p) => p.class.replace("_", " ")),
      y: pts.map((p) => p[key]),
      marker: { color: color(name, i), size: 3, opacity: 0.5 },
      boxpoints: "all",
      jitter: 0.5,
      pointpos: 0,
    })),
    layout: base(key === "dProb" ? "Locality drift: change in p(original answer), per class" : "Locality drift: KL(pre ‖ post), per class", {
      boxmode: "group",
      yaxis: { title: { text: key === "dProb" ? "p after − p before" : "KL (nats)" }, ...(key === "kl" ? { type: "log" } : {}) },
      xaxis: { title: { text: "locality class" }, categoryorder: "array", categoryarray: LOCALITY_CLASSES.map((c) => c.replace("_", " ")) },
    }),
  };
}

/** Heatmap: change in p(original answer of fact j) after editing fact i. */
export function heatmapFigure(h: EvalResult["heatmap"][string], method: string): Figure {
  return {
    data: [{ type: "heatmap", z: h.dp, x: h.labels, y: h.labels, colorscale: "RdBu", zmid: 0, zmin: -1, zmax: 1, colorbar: { title: { text: "Δp(original answer)", side: "right" }, thickness: 14, tickvals: [-1, -0.5, 0, 0.5, 1] } }],
    layout: base(`${method}: drift of every probed fact (columns) after editing one fact (rows)`, {
      height: 660,
      margin: { t: 50, l: 220, r: 120, b: 200 },
      xaxis: { tickfont: { size: 9 }, tickangle: 45, title: { text: "probed fact" } },
      yaxis: { tickfont: { size: 9 }, autorange: "reversed", title: { text: "edited fact" } },
    }),
  };
}

const SYMBOLS = ["circle-open", "square", "diamond-open", "cross", "triangle-up-open", "x"];

/**
 * Curves of several methods in stacked panels (one per quantity). Each method has its own colour,
 * marker and line width (earlier methods drawn wider), so a curve lying exactly on another stays visible.
 */
function methodPanels(title: string, xTitle: string, byMethod: [string, number[], Record<string, number[]>][], panels: [string, string][], xLog: boolean): Figure {
  const n = panels.length;
  const gap = 0.08;
  const h = (1 - gap * (n - 1)) / n;
  const data: Record<string, unknown>[] = [];
  const xs = [...new Set(byMethod.flatMap(([, x]) => x))].sort((a, b) => a - b);
  const layout: Record<string, unknown> = base(title, { height: 250 * n + 110, legend: { orientation: "h", y: -0.15 } });
  panels.forEach(([key, yTitle], i) => {
    const ax = i === 0 ? "" : String(i + 1);
    const top = 1 - i * (h + gap);
    layout[`yaxis${ax}`] = { title: { text: yTitle }, domain: [top - h, top], range: [-0.03, 1.05] };
    layout[`xaxis${ax}`] = { anchor: `y${ax}`, ...(i ? { matches: "x" } : {}), ...(xLog ? { type: "log", tickvals: xs, ticktext: xs.map(String) } : {}), showticklabels: i === n - 1, ...(i === n - 1 ? { title: { text: xTitle } } : {}) };
    byMethod.forEach(([name, x, ys], j) => {
      data.push({ type: "scatter", mode: xs.length > 12 ? "lines" : "lines+markers", name, legendgroup: name, showlegend: i === 0, x, y: ys[key], xaxis: `x${ax}`, yaxis: `y${ax}`, line: { color: color(name, j), width: Math.max(1.5, 5 - 1.5 * j) }, marker: { symbol: SYMBOLS[j % SYMBOLS.length], size: Math.max(6, 13 - 3 * j) } });
    });
  });
  return { data, layout };
}

/** Batched edits: ES and locality vs k (one panel each), per method. */
export function batchedFigure(batched: EvalResult["batched"]): Figure {
  const rows = Object.entries(batched).map(([name, pts]): [string, number[], Record<string, number[]>] => [name, pts.map((p) => p.k), { es: pts.map((p) => p.es), locality: pts.map((p) => p.locality) }]);
  return methodPanels("Batched edits: k facts edited in one call", "k (edits per call)", rows, [["es", "edit success"], ["locality", "locality unchanged"]], true);
}

/** Sequential edits: retention of earlier edits and locality after each edit (one panel each), per method. */
export function sequentialFigure(seq: EvalResult["sequential"]): Figure {
  const rows = Object.entries(seq).map(([name, c]): [string, number[], Record<string, number[]>] => [name, c.retention.map((_, j) => j + 1), { retention: c.retention, locality: c.locality }]);
  return methodPanels("Sequential edits: one model edited again and again", "edits applied", rows, [["retention", "earlier edits still right"], ["locality", "probe facts unchanged"]], false);
}

/** All report figures, in report order. */
export function evalFigures(r: EvalResult): { title: string; fig: Figure }[] {
  const figs = [
    { title: "Summary", fig: summaryFigure(r.methods) },
    { title: "Locality drift (probability)", fig: driftFigure(r.drift, "dProb") },
    { title: "Locality drift (KL)", fig: driftFigure(r.drift, "kl") },
    ...Object.keys(r.heatmap).map((m) => ({ title: `Drift heatmap: ${m}`, fig: heatmapFigure(r.heatmap[m], m) })),
    { title: "Batched edits", fig: batchedFigure(r.batched) },
  ];
  if (Object.keys(r.sequential).length) figs.push({ title: "Sequential edits", fig: sequentialFigure(r.sequential) });
  return figs;
}

const pct = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "n/a");

/** The results as a markdown table (one row per method). */
export function markdownTable(methods: Record<string, MethodSummary>): string {
  const head = "| method | ES (edit prompt) | held-out paraphrases | paper ES | locality unchanged | same subject | same relation | (same answer) | unrelated | mean KL | acc DD | ppl DD | margins: edit / para / loc | latency ms |";
  const sep = "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";
  const rows = Object.entries(methods).map(
    ([n, m]) =>
      `| ${n} | ${pct(m.es)} | ${pct(m.paraphrase)} | ${pct(m.es_paper)} | ${pct(m.locality.overall)} | ${pct(m.locality.same_subject)} | ${pct(m.locality.same_relation)} | ${pct(m.locality.same_relation_same_answer)} | ${pct(m.locality.unrelated)} | ${m.kl.overall.toExponential(2)} | ${pct(m.acc_dd)} | ${m.ppl_dd.toFixed(3)} | ${[m.magnitude.edit, m.magnitude.paraphrase, m.magnitude.locality].map((x) => x.toFixed(2)).join(" / ")} | ${m.latency_ms.toFixed(1)} |`,
  );
  return [head, sep, ...rows].join("\n");
}

/** Path of the minified plotly.js bundle (inlined into reports and notebooks). */
export function plotlyBundlePath(): string {
  return require.resolve("plotly.js-dist-min/plotly.min.js");
}

/** A self-contained HTML page: markdown-ish preamble, the table, and every figure. */
export function htmlReport(title: string, intro: string, table: string, figures: { title: string; fig: Figure }[]): string {
  const rows = table.split("\n").filter((l) => !/^\|-/.test(l));
  const cells = (l: string) => l.split("|").slice(1, -1).map((c) => c.trim());
  const tableHtml = `<table><thead><tr>${cells(rows[0]).map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr></thead><tbody>${rows
    .slice(1)
    .map((l) => `<tr>${cells(l).map((c) => `<td>${escapeHtml(c)}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
  const divs = figures.map((f, i) => `<h2>${escapeHtml(f.title)}</h2><div id="fig${i}" class="fig"></div>`).join("\n");
  const scripts = figures.map((f, i) => `Plotly.newPlot("fig${i}", ${scriptJson(f.fig.data)}, ${scriptJson(f.fig.layout)}, {responsive: true});`).join("\n");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.fig{min-height:420px}pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}</style>
<script>${fs.readFileSync(plotlyBundlePath(), "utf8")}</script></head>
<body><h1>${escapeHtml(title)}</h1><pre>${escapeHtml(intro)}</pre>${tableHtml}
${divs}
<script>${scripts}</script></body></html>
`;
}
