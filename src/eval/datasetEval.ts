/**
 * Evaluating editing methods on a standard dataset (zsRE, CounterFact; src/datasets): each record is
 * one single edit of the base model, scored with the dataset's own metrics before and after, then
 * undone. Scores are averaged over records (the paper's and ROME's convention).
 */
import { counterfactScore, counterfactScores } from "./counterfactMetrics";
import { Dataset } from "../datasets/records";
import { zsreScores } from "./zsreMetrics";
import type { EditedModel } from "../model/languageModel";
import { disposeMethodEdit, EditMethod } from "./methods";

export interface DatasetEvalResult {
  dataset: { kind: Dataset["kind"]; file: string; records: number };
  methods: {
    name: string;
    /** Means over records (CounterFact: post-edit; `pre` holds the unedited model's). */
    scores: Record<string, number>;
    pre?: Record<string, number>;
    latency_ms: number;
  }[];
}

function meanOf(rows: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(rows[0] ?? {})) out[k] = rows.reduce((a, r) => a + r[k], 0) / rows.length;
  return out;
}

/** Scores of `methods` on the first `limit` records of `data`; `onRecord` reports progress. */
export function evaluateDataset(model: EditedModel, methods: readonly EditMethod[], data: Dataset, opts: { limit?: number; onRecord?: (method: string, done: number, total: number) => void } = {}): DatasetEvalResult {
  const records = data.records.slice(0, opts.limit ?? data.records.length);
  const pre = data.kind === "counterfact" ? meanOf(records.map((r) => counterfactScores(model, r) as unknown as Record<string, number>)) : undefined;
  if (pre) pre.score = counterfactScore(pre as never);
  const out: DatasetEvalResult = { dataset: { kind: data.kind, file: data.file, records: records.length }, methods: [] };
  for (const method of methods) {
    const rows: Record<string, number>[] = [];
    let latency = 0;
    records.forEach((r, i) => {
      const e = method.edit(model, [{ prompt: r.prompts[0], target: r.target_new }]);
      try {
        latency += e.latencyMs;
        rows.push((data.kind === "zsre" ? zsreScores(model, e.model, r) : counterfactScores(e.model, r)) as unknown as Record<string, number>);
      } finally {
        disposeMethodEdit(e);
      }
      opts.onRecord?.(method.name, i + 1, records.length);
    });
    const scores = meanOf(rows);
    if (data.kind === "counterfact") scores.score = counterfactScore(scores as never);
    out.methods.push({ name: method.name, scores, ...(pre ? { pre } : {}), latency_ms: latency / records.length });
  }
  return out;
}

/** A text table of a dataset evaluation (metrics as percentages, as the papers report them). */
export function formatDatasetTable(r: DatasetEvalResult): string {
  const keys = Object.keys(r.methods[0]?.scores ?? {});
  const rows = [...(r.methods[0]?.pre ? [{ name: "unedited", scores: r.methods[0].pre, latency_ms: NaN }] : []), ...r.methods];
  const head = ["method", ...keys, "ms/edit"];
  const body = rows.map((m) => [m.name, ...keys.map((k) => (100 * m.scores[k]).toFixed(1)), Number.isNaN(m.latency_ms) ? "" : m.latency_ms.toFixed(1)]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i ? x.padStart(w[i]) : x.padEnd(w[i]))).join("  ");
  return [`${r.dataset.kind} (${r.dataset.records} records of ${r.dataset.file})`, line(head), ...body.map(line)].join("\n");
}
