/**
 * The tutorial's figures, one function per kind of figure, so that notebooks hold one call per
 * figure and every figure follows the same rules: titled axes, one panel per quantity (losses and
 * accuracies never share an axis), running values drawn smoothed with the raw values faint, bars
 * side by side (never one trace under another), colour bars with room for their labels.
 */
import type { AverageTrace, CausalTrace, TraceKind } from "../eval/causalTrace";
import type { Figure } from "./plots";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"];
const layoutBase = (title: string, extra: Record<string, unknown> = {}) => ({ title: { text: title }, template: "plotly_white", margin: { t: 60, l: 70, r: 30, b: 60 }, ...extra });

/** Exponential moving average with bias correction (TensorBoard's smoothing); weight 0 = none. */
export function smooth(ys: readonly number[], weight = 0.8): number[] {
  let s = 0;
  return ys.map((y, i) => {
    s = weight * s + (1 - weight) * y;
    return s / (1 - weight ** (i + 1));
  });
}

export interface Panel {
  /** The panel's y-axis title (what is plotted, with its unit). */
  yTitle: string;
  series: Record<string, readonly number[]>;
  /** Fixed y range (e.g. [0, 1] for accuracies). */
  range?: [number, number];
  log?: boolean;
}

/**
 * Curves over steps in stacked panels sharing the x axis. Each series is drawn smoothed (`smoothing`,
 * an EMA weight) as a solid line with its raw values faint behind it; smoothing 0 draws raw only.
 */
export function panelsFigure(title: string, steps: readonly number[], panels: readonly Panel[], smoothing = 0.8, xTitle = "step"): Figure {
  const n = panels.length;
  const gap = 0.06;
  const h = (1 - gap * (n - 1)) / n;
  const data: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = layoutBase(title, { height: 220 * n + 90, showlegend: true, legend: { orientation: "h", y: -0.12 } });
  let k = 0;
  panels.forEach((p, i) => {
    const axis = i === 0 ? "" : String(i + 1);
    const top = 1 - i * (h + gap);
    layout[`yaxis${axis}`] = { title: { text: p.yTitle }, domain: [top - h, top], ...(p.range ? { range: p.range } : {}), ...(p.log ? { type: "log" } : {}) };
    layout[`xaxis${axis}`] = { anchor: `y${axis}`, matches: i === 0 ? undefined : "x", showticklabels: i === n - 1, ...(i === n - 1 ? { title: { text: xTitle } } : {}) };
    for (const [name, ys] of Object.entries(p.series)) {
      const color = PALETTE[k++ % PALETTE.length];
      const xy = { x: steps, xaxis: `x${axis}`, yaxis: `y${axis}` };
      if (smoothing > 0) {
        data.push({ type: "scatter", mode: "lines", name: `${name} (raw)`, ...xy, y: ys, line: { color, width: 1 }, opacity: 0.25, showlegend: false, hoverinfo: "skip" });
        data.push({ type: "scatter", mode: "lines", name, ...xy, y: smooth(ys, smoothing), line: { color, width: 2 } });
      } else {
        data.push({ type: "scatter", mode: "lines+markers", name, ...xy, y: ys, line: { color, width: 2 } });
      }
    }
  });
  return { data, layout };
}

export interface BarOptions {
  yTitle: string;
  xTitle?: string;
  range?: [number, number];
  log?: boolean;
  /** Rotate long category labels (degrees) and leave them room. */
  tickangle?: number;
  height?: number;
  /** A horizontal reference line per name (e.g. the base model's value). */
  references?: Record<string, number>;
}

/** Grouped bars: one group per category, one bar per series, side by side. */
export function barsFigure(title: string, categories: readonly string[], series: Record<string, readonly number[]>, o: BarOptions): Figure {
  const data: Record<string, unknown>[] = Object.entries(series).map(([name, y], i) => ({ type: "bar", name, x: categories, y, marker: { color: PALETTE[i % PALETTE.length] } }));
  const shapes = Object.entries(o.references ?? {}).map(([, y]) => ({ type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { dash: "dash", color: "#555", width: 1 } }));
  const annotations = Object.entries(o.references ?? {}).map(([name, y]) => ({ xref: "paper", x: 1, y, text: name, showarrow: false, xanchor: "right", yanchor: "bottom", font: { size: 10, color: "#555" } }));
  const longest = Math.max(0, ...categories.map((c) => c.length));
  const bottom = o.tickangle ? Math.min(260, 40 + 5.5 * longest) : 70;
  return {
    data,
    layout: layoutBase(title, {
      barmode: "group",
      height: o.height ?? 380 + (o.tickangle ? bottom - 70 : 0),
      margin: { t: 60, l: 70, r: 30, b: bottom },
      xaxis: { ...(o.xTitle ? { title: { text: o.xTitle } } : {}), ...(o.tickangle ? { tickangle: o.tickangle, tickfont: { size: 10 }, automargin: true } : {}) },
      yaxis: { title: { text: o.yTitle }, ...(o.range ? { range: o.range } : {}), ...(o.log ? { type: "log" } : {}) },
      legend: { orientation: "h", y: 1.08, x: 0 },
      shapes,
      annotations,
    }),
  };
}

/** A swept value as a tick label: integers as they are (k = 1, 5, 25), small rates in exponent form (4.0e-4). */
function tickLabel(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) < 1e-2 ? v.toExponential(1) : String(Number(v.toPrecision(3)));
}

/**
 * Lines over a swept setting (x may be logarithmic), with optional horizontal references (another
 * method's value). A series named "... (paper)" (a publication's numbers) is drawn dashed.
 */
export function sweepFigure(title: string, x: readonly number[], series: Record<string, readonly number[]>, o: { xTitle: string; yTitle: string; logX?: boolean; range?: [number, number]; references?: Record<string, number> }): Figure {
  const data: Record<string, unknown>[] = Object.entries(series).map(([name, y], i) => ({ type: "scatter", mode: "lines+markers", name, x, y, line: { color: PALETTE[i % PALETTE.length], width: 2, ...(name.endsWith("(paper)") ? { dash: "dash" } : {}) } }));
  Object.entries(o.references ?? {}).forEach(([name, y], i) => {
    data.push({ type: "scatter", mode: "lines", name, x: [x[0], x[x.length - 1]], y: [y, y], line: { color: PALETTE[i % PALETTE.length], dash: "dash", width: 1 } });
  });
  return {
    data,
    layout: layoutBase(title, {
      height: 400,
      xaxis: { title: { text: o.xTitle }, ...(o.logX ? { type: "log", tickvals: x, ticktext: x.map(tickLabel) } : { tickvals: x }) },
      yaxis: { title: { text: o.yTitle }, ...(o.range ? { range: o.range } : {}) },
      legend: { orientation: "h", y: -0.25 },
    }),
  };
}

/** Bars for one of several precomputed settings, chosen with a slider (e.g. an edit at several step scales). */
export function sliderBarsFigure(title: string, categories: readonly string[], settings: readonly { label: string; y: readonly number[] }[], active: number, o: { yTitle: string; sliderPrefix: string; range?: [number, number] }): Figure {
  return {
    data: settings.map((s, i) => ({ type: "bar", name: s.label, x: categories, y: s.y, visible: i === active, marker: { color: PALETTE[0] } })),
    layout: layoutBase(title, {
      height: 440,
      yaxis: { title: { text: o.yTitle }, ...(o.range ? { range: o.range } : {}) },
      showlegend: false,
      sliders: [{ active, currentvalue: { prefix: o.sliderPrefix }, pad: { t: 40 }, steps: settings.map((s, i) => ({ label: s.label, method: "restyle", args: ["visible", settings.map((_, j) => j === i)] })) }],
    }),
  };
}

/** One colour scale for every causal-tracing panel (plotly's own Viridis: dark = low, yellow = high). */
const TRACE_SCALE = "Viridis";

const KIND_TITLE: Record<TraceKind, string> = { hidden: "the residual stream after the block", mlp: "the MLP output", attn: "the attention output" };

/** One causal trace: p(answer) with one state restored, per input token (rows) and block (columns); the same scale as the average figure. */
export function causalTraceFigure(t: CausalTrace, kind: TraceKind): Figure {
  const labels = t.tokens.map((tok, i) => `${i}: ${tok}${i >= t.subjectRange[0] && i < t.subjectRange[1] ? " *" : ""}`);
  const L = t.restored[kind].length;
  const z = t.tokens.map((_, pos) => t.restored[kind].map((row) => row[pos])); // [position][layer]
  return {
    data: [{ type: "heatmap", z, x: Array.from({ length: L }, (_, l) => `block ${l}`), y: labels, zmin: 0, zmax: 1, colorscale: TRACE_SCALE, colorbar: { title: { text: `p(${t.answer})`, side: "right" }, thickness: 14 } }],
    layout: layoutBase(`Restoring ${KIND_TITLE[kind]} at one token and block (* subject, corrupted)`, {
      height: 140 + 32 * t.tokens.length,
      margin: { t: 60, l: 160, r: 110, b: 60 },
      xaxis: { title: { text: "block" } },
      yaxis: { title: { text: "input token", standoff: 12 }, autorange: "reversed", automargin: true },
    }),
  };
}

/** The average causal effect (p restored − p corrupted) by ROME's token groups and block, one panel per kind. */
export function averageTraceFigure(a: AverageTrace): Figure {
  const kinds: TraceKind[] = ["hidden", "mlp", "attn"];
  const L = a.effect.hidden.length;
  const w = 0.28;
  const data = kinds.map((k, i) => ({
    type: "heatmap",
    z: a.groups.map((_, g) => a.effect[k].map((row) => row[g])),
    x: Array.from({ length: L }, (_, l) => `block ${l}`),
    y: [...a.groups],
    xaxis: `x${i === 0 ? "" : i + 1}`,
    yaxis: `y${i === 0 ? "" : i + 1}`,
    zmin: 0,
    zmax: Math.max(0.01, ...kinds.flatMap((kk) => a.effect[kk].flat().filter(Number.isFinite))),
    colorscale: TRACE_SCALE,
    showscale: i === 2,
    colorbar: { title: { text: "average indirect effect on p(answer)", side: "right" }, thickness: 14 },
  }));
  const layout: Record<string, unknown> = layoutBase(`Average indirect effect of restoring one state, over ${a.facts} facts`, { height: 380, margin: { t: 80, l: 170, r: 110, b: 60 } });
  kinds.forEach((k, i) => {
    const ax = i === 0 ? "" : String(i + 1);
    layout[`xaxis${ax}`] = { domain: [i * (w + 0.05), i * (w + 0.05) + w], anchor: `y${ax}`, title: { text: `block (${KIND_TITLE[k]})`, font: { size: 11 } } };
    layout[`yaxis${ax}`] = { anchor: `x${ax}`, autorange: "reversed", showticklabels: i === 0, ...(i === 0 ? { title: { text: "token group" } } : {}) };
  });
  return { data, layout };
}

/**
 * Several runs (seeds) per category, one panel per metric: a dash at the mean, a line from the lowest
 * to the highest run, and every run as a point, so a reader sees the spread beside the mean (a dot
 * plot: its axis need not start at zero).
 */
export function seedRangeFigure(title: string, categories: readonly string[], panels: readonly { yTitle: string; runs: readonly (readonly number[])[]; range?: [number, number] }[]): Figure {
  const n = panels.length;
  const gap = 0.06;
  const w = (1 - gap * (n - 1)) / n;
  const data: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = layoutBase(title, { height: 420, showlegend: false, margin: { t: 70, l: 70, r: 30, b: 110 } });
  panels.forEach((p, i) => {
    const ax = i === 0 ? "" : String(i + 1);
    const mean = p.runs.map((r) => r.reduce((a, b) => a + b, 0) / r.length);
    const lo = p.runs.map((r, j) => mean[j] - Math.min(...r));
    const hi = p.runs.map((r, j) => Math.max(...r) - mean[j]);
    data.push({ type: "scatter", mode: "markers", x: categories, y: mean, xaxis: `x${ax}`, yaxis: `y${ax}`, marker: { symbol: "line-ew-open", size: 26, line: { width: 3, color: PALETTE[i % PALETTE.length] } }, error_y: { type: "data", symmetric: false, array: hi, arrayminus: lo, color: PALETTE[i % PALETTE.length], thickness: 2, width: 0 }, hovertemplate: "%{x}: mean %{y:.3f}<extra></extra>" });
    data.push({ type: "scatter", mode: "markers", x: categories.flatMap((c, j) => p.runs[j].map(() => c)), y: p.runs.flat(), xaxis: `x${ax}`, yaxis: `y${ax}`, marker: { color: "#222", size: 6 }, hovertemplate: "%{x}: %{y:.3f}<extra>one run</extra>" });
    layout[`xaxis${ax}`] = { domain: [i * (w + gap), i * (w + gap) + w], anchor: `y${ax}`, tickangle: 35, tickfont: { size: 10 } };
    layout[`yaxis${ax}`] = { anchor: `x${ax}`, title: { text: p.yTitle }, ...(p.range ? { range: p.range } : {}) };
  });
  return { data, layout };
}
