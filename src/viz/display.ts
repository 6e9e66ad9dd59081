/**
 * Rich output for the tslab notebooks: plotly figures and tables (danfojs DataFrames or plain rows).
 *
 * A figure is sent as one display bundle with two MIME types:
 *  - `application/vnd.plotly.v1+json`: rendered natively by VS Code and JupyterLab's plotly renderer;
 *  - `text/html`: a div plus a script, rendered by Jupyter Notebook and in offline HTML exports.
 *    plotly.js is not inlined (it is 4.8 MB): the first figure on a page loads it once from
 *    `plotly.min.js` beside the notebook (served by Jupyter's /files/ route; `npm run notebooks`
 *    and the notebook runner put it there) or beside an HTML export, with no network. An AMD
 *    loader (classic notebook's require.js) is hidden while it loads, so it defines `Plotly`.
 * tslab's public `display` API sends one MIME type per call, so bundles go through the same
 * writer it uses (tslab 1.0.22 internals, pinned); outside a kernel the functions fall back to text.
 */
import { Figure } from "./plots";
import { escapeHtml, scriptJson } from "./escape";

type Writer = (msg: { data: Record<string, unknown>; metadata: object; transient: object }, update: boolean) => void;

function kernelWriter(): Writer | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const j = require("tslab/dist/jupyter") as { lastWriteDisplayData: Writer | null };
    return j.lastWriteDisplayData ?? null;
  } catch {
    return null;
  }
}

/** Send a MIME bundle to the notebook; returns false outside a tslab kernel. */
function displayBundle(data: Record<string, unknown>): boolean {
  const w = kernelWriter();
  if (!w) return false;
  w({ data, metadata: {}, transient: {} }, false);
  return true;
}

// Per-kernel-session display state: a counter for unique figure ids.
const session = { figures: 0 };

/**
 * Loads plotly.js once per page: in Jupyter Notebook from the notebook's folder through the /files/
 * route (/notebooks/<dir>/x.ipynb -> /files/<dir>/plotly.min.js), elsewhere (an HTML export) from
 * plotly.min.js beside the page.
 */
const PLOTLY_LOADER = `(function(w){if(w.Plotly||w.__mendPlotlyLoading)return;w.__mendPlotlyLoading=1;
var b=(document.body&&document.body.getAttribute("data-base-url"))||"/",p=w.location.pathname,n=b+"notebooks/";
var src=(/\.ipynb$/.test(p)&&p.indexOf(n)===0)?b+"files/"+p.slice(n.length).replace(/[^/]*$/,"")+"plotly.min.js":"plotly.min.js";
var d=w.define;w.define=undefined;var s=document.createElement("script");s.src=src;s.onload=s.onerror=function(){w.define=d;};document.head.appendChild(s);})(window);`;

/** HTML that draws `fig` into a new div, loading plotly.js first if the page has none. */
export function figureHtml(fig: Figure, id: string): string {
  const height = Number(fig.layout.height ?? 440) || 440;
  const draw = `Plotly.newPlot(${scriptJson(id)}, ${scriptJson(fig.data)}, ${scriptJson(fig.layout)}, {responsive: true});`;
  return `<div id="${escapeHtml(id)}" style="height:${height}px"></div><script>${PLOTLY_LOADER}(function(){function go(){if(window.Plotly){${draw}}else{setTimeout(go,50);}}go();})();</script>`;
}

/** Show a plotly figure ({data, layout}) in the notebook. */
export function showFigure(fig: Figure): void {
  const id = `mend-fig-${Date.now().toString(36)}-${session.figures++}`;
  const html = figureHtml(fig, id);
  if (!displayBundle({ "application/vnd.plotly.v1+json": fig, "text/html": html, "text/plain": `[plotly figure: ${String((fig.layout.title as { text?: string })?.text ?? "")}]` })) {
    console.log(`[plotly figure: ${JSON.stringify(fig.layout.title)}] (not in a notebook)`);
  }
}

/** Anything table-like: a danfojs DataFrame ({columns, values}) or a list of row objects (turned into one). */
export type TableLike = { columns: string[]; values: unknown } | readonly object[];

/**
 * Row objects become a danfojs DataFrame (loaded on first use; danfojs shares our tfjs engine
 * through the shim in package.json overrides), so every table shown is a DataFrame.
 */
export function toDataFrame(objects: readonly object[]): { columns: string[]; values: unknown } {
  const rows = objects as readonly Record<string, unknown>[];
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const dfd = require("danfojs-node") as { DataFrame: new (data: unknown, opts?: { columns?: string[] }) => { columns: string[]; values: unknown } };
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return new dfd.DataFrame(rows.map((r) => columns.map((c) => (r[c] === undefined ? "" : r[c]))), { columns });
}

const isRows = (t: TableLike): t is readonly object[] => Array.isArray(t);

function toColumnsValues(t: TableLike): { columns: string[]; values: unknown[][] } {
  const df = isRows(t) ? toDataFrame(t) : t;
  const v = df.values as unknown[];
  return { columns: df.columns, values: v.map((r) => (Array.isArray(r) ? r : [r])) };
}

const fmt = (v: unknown): string => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(4) : v.toExponential(2)) : String(v ?? ""));

/** An HTML table (danfojs has no HTML output). */
export function tableHtml(t: TableLike): string {
  const { columns, values } = toColumnsValues(t);
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const body = values.map((r) => `<tr>${r.map((v) => `<td style="text-align:${typeof v === "number" ? "right" : "left"}">${escapeHtml(fmt(v))}</td>`).join("")}</tr>`).join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

/** A fixed-width text table (the plain-text fallback). */
export function tableText(t: TableLike): string {
  const { columns, values } = toColumnsValues(t);
  const cells = [columns, ...values.map((r) => r.map(fmt))];
  const w = columns.map((_, i) => Math.max(...cells.map((r) => String(r[i]).length)));
  return cells.map((r) => r.map((c, i) => String(c).padEnd(w[i])).join("  ")).join("\n");
}

/** Show a table as HTML in the notebook (text elsewhere). */
export function showTable(t: TableLike): void {
  if (!displayBundle({ "text/html": tableHtml(t), "text/plain": tableText(t) })) console.log(tableText(t));
}

/**
 * A figure that is redrawn in place (live training curves): each `update` replaces the same output.
 */
export function liveFigure(): { update(fig: Figure): void } {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  let handle: { html(s: string): void } | null = null;
  try {
    handle = require("tslab").newDisplay();
  } catch {
    handle = null;
  }
  const id = `mend-live-${Date.now().toString(36)}-${session.figures++}`;
  return {
    update(fig: Figure) {
      if (handle) handle.html(figureHtml(fig, id));
    },
  };
}
