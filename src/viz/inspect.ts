/**
 * Small read-outs used by the notebooks to look inside MEND: the memory argument for gradient
 * factoring, the editor's statistics and FiLM parameters, and how the pseudo-gradient compares
 * with the raw gradient. Everything returns plain numbers.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeBatch, makeBatch } from "../model/batch";
import { captureEditorFactors, transformFactors } from "../mend/edit";
import { EditRequest } from "../datasets/editRecord";
import { Editor } from "../mend/editor";
import { disposeFactors, outerProductSum } from "../mend/factor";
import { pseudoGradient } from "../mend/update";
import { stdOf } from "../mend/stats";
import type { LanguageModel } from "../model/languageModel";
import { ModelView } from "../model/paramsModel";
import { nextTokenProbs } from "../model/score";

export interface MemoryRow {
  model: string;
  d_in: number;
  d_out: number;
  /** Floats in one MLP weight's gradient: d_in · d_out. */
  full_gradient: number;
  /** Floats MEND's editor reads per token: d_in + d_out. */
  per_token_factors: number;
  /** full / factored for a 10-token edit. */
  ratio_10_tokens: number;
}

/** The memory argument of MEND §3.1 for real model sizes (MLP c_fc: d_in = d_model, d_out = 4 d_model). */
export function gradientMemoryTable(models: { model: string; dModel: number }[] = [
  { model: "toy (this repo)", dModel: 128 },
  { model: "distilGPT-2 / GPT-2 small", dModel: 768 },
  { model: "GPT-2 XL", dModel: 1600 },
  { model: "GPT-J 6B", dModel: 4096 },
]): MemoryRow[] {
  return models.map(({ model, dModel }) => {
    const dIn = dModel;
    const dOut = 4 * dModel;
    return { model, d_in: dIn, d_out: dOut, full_gradient: dIn * dOut, per_token_factors: dIn + dOut, ratio_10_tokens: (dIn * dOut) / (10 * (dIn + dOut)) };
  });
}

export interface EditorSizeRow {
  weight: string;
  d_in: number;
  d_out: number;
  /** Entries of the weight's gradient, d_in · d_out: the input of an editor that reads it whole. */
  gradient_entries: number;
  /** One dense layer from the flattened gradient to an update of the same size: (d_in · d_out)². */
  dense_editor: number;
  /** MEND's network for this weight shape (one mode): 2 layers · (2·D·r + D + 2·D), D = d_in + d_out. */
  mend_editor: number;
  rank: number;
}

/**
 * The paper's reason to act on u and δ (§3.1): an editor that reads a d_in × d_out gradient as one
 * vector needs a weight per (input entry, output entry) pair even for a single linear layer; MEND's
 * network reads (u, δ), D = d_in + d_out numbers per token, through rank-r layers.
 */
export function editorSizeTable(weights: { weight: string; dIn: number; dOut: number; rank: number }[]): EditorSizeRow[] {
  return weights.map(({ weight, dIn, dOut, rank }) => {
    const D = dIn + dOut;
    const r = Math.min(rank, D);
    return { weight, d_in: dIn, d_out: dOut, gradient_entries: dIn * dOut, dense_editor: (dIn * dOut) ** 2, mend_editor: 2 * (2 * D * r + D + 2 * D), rank: r };
  });
}

export interface TokenFactorRow {
  weight: string;
  /** The input token at the row's position (the u it holds is that token's layer input). */
  token: string;
  position: number;
  "‖u‖": number;
  "‖ũ‖": number;
  "‖δ‖": number;
  "‖δ̃‖": number;
  /** ‖ũ‖‖δ̃‖ / Σ over the weight's rows: the row's share of the update (rank-1 terms' norms). */
  share: number;
}

/**
 * What the editor makes of each token row of an edit: the raw factors u, δ and the editor's ũ, δ̃
 * per kept row, with each row's share of the update. The rows are the edit's token positions whose
 * u and δ are non-zero (notebook 3).
 */
export function factorsByToken(model: ModelView, editor: Editor, request: EditRequest): TokenFactorRow[] {
  const b = makeBatch(model.tokenizer, [request], "target", model.config.n_positions);
  const ids = b.inputIds.arraySync()[0] as number[];
  const f = captureEditorFactors(model.params, model.config, b, editor);
  disposeBatch(b);
  try {
    return tf.tidy(() => {
      const t = transformFactors(editor, f);
      return editor.config.innerParams.flatMap((name) => {
        const norms = (x: tf.Tensor2D) => Array.from(tf.norm(x, "euclidean", 1).dataSync());
        const [u, ut, d, dt] = [norms(f.u[name]), norms(t[name].uTilde), norms(f.delta[name]), norms(t[name].deltaTilde)];
        const total = ut.reduce((a, x, i) => a + x * dt[i], 0);
        return f.rows[name].map((row, i) => {
          const position = row % f.seqLen;
          return { weight: name, token: model.tokenizer.token(ids[position]), position, "‖u‖": u[i], "‖ũ‖": ut[i], "‖δ‖": d[i], "‖δ̃‖": dt[i], share: (ut[i] * dt[i]) / total };
        });
      });
    });
  } finally {
    disposeFactors(f);
  }
}

export interface TokenMove {
  token: string;
  before: number;
  after: number;
  change: number;
}

/** The next tokens after `prompt` whose probability rose most and fell most from `pre` to `post`. */
export function topMovers(pre: LanguageModel, post: LanguageModel, prompt: string, k = 5): { rose: TokenMove[]; fell: TokenMove[] } {
  const [a] = nextTokenProbs(pre, [prompt]);
  const [b] = nextTokenProbs(post, [prompt]);
  const moves = Array.from(a, (p, id) => ({ token: pre.tokenizer.token(id), before: p, after: b[id], change: b[id] - p }));
  moves.sort((x, y) => y.change - x.change);
  return { rose: moves.slice(0, k), fell: moves.slice(-k).reverse() };
}

export interface GradientComparison {
  name: string;
  rows: number;
  /** cos(∇W, ∇̃W) over all entries. */
  cosine: number;
  rawNorm: number;
  pseudoNorm: number;
  /** ‖α ∇̃W‖ / ‖W‖: the relative size of the applied update. */
  relativeUpdate: number;
}

/**
 * For each edited weight: raw gradient Σ u δᵀ vs the editor's pseudo-gradient Σ ũ δ̃ᵀ, both from the
 * factors an edit with these requests captures (the editor's loss grouping and rows, as mendEdit).
 */
export function compareWithGradient(model: ModelView, editor: Editor, requests: readonly EditRequest[]): GradientComparison[] {
  const b = makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
  const f = captureEditorFactors(model.params, model.config, b, editor);
  disposeBatch(b);
  try {
    return tf.tidy(() => {
      const t = transformFactors(editor, f);
      return editor.config.innerParams.map((name) => {
        const raw = outerProductSum(f.u[name], f.delta[name]);
        const pseudo = pseudoGradient(t[name].uTilde, t[name].deltaTilde);
        const [dot, rn, pn, wn, a] = [tf.sum(tf.mul(raw, pseudo)), tf.norm(raw), tf.norm(pseudo), tf.norm(model.params[name]), editor.editLrs[name]].map((x) => x.dataSync()[0]);
        return { name, rows: f.rows[name].length, cosine: dot / (rn * pn), rawNorm: rn, pseudoNorm: pn, relativeUpdate: (Math.abs(a) * pn) / wn };
      });
    });
  } finally {
    disposeFactors(f);
  }
}

export interface EditorNetSummary {
  net: string;
  modes: string;
  rows_seen: number;
  /** Range of σ_u and σ_δ over dimensions. */
  sigma_u: string;
  sigma_delta: string;
  /** Mean |scale − 1| and |shift| of each mode, per layer (how far FiLM moved from init). */
  film: string;
}

export function editorSummary(editor: Editor): EditorNetSummary[] {
  return Object.values(editor.nets).map((net) => {
    const range = (t: tf.Tensor1D) => {
      const v = t.dataSync();
      t.dispose();
      return `${Math.min(...v).toExponential(1)} .. ${Math.max(...v).toExponential(1)}`;
    };
    const film = net.layers
      .map((l, i) => {
        const s = tf.tidy(() => tf.mean(tf.abs(tf.sub(l.modeScale, 1)), 1).dataSync());
        const o = tf.tidy(() => tf.mean(tf.abs(l.modeShift), 1).dataSync());
        return `L${i}: ` + net.modes.map((_, m) => `${s[m].toFixed(3)}/${o[m].toFixed(3)}`).join(", ");
      })
      .join("; ");
    return {
      net: net.key,
      modes: net.modes.join(", "),
      rows_seen: net.stats.count,
      sigma_u: net.stats.count >= 2 ? range(stdOf(net.stats.u, net.stats.count)) : "n/a",
      sigma_delta: net.stats.count >= 2 ? range(stdOf(net.stats.delta, net.stats.count)) : "n/a",
      film,
    };
  });
}

/** The learned edit learning rates α per edited weight. */
export function editLrValues(editor: Editor): Record<string, number> {
  return Object.fromEntries(Object.entries(editor.editLrs).map(([n, v]) => [n, v.dataSync()[0]]));
}

/**
 * Numerical rank of a matrix [m, n]: rows orthogonalised one by one (modified Gram-Schmidt, float64),
 * counting those whose remaining norm exceeds `relTol` times the largest row norm. For the notebooks'
 * "ΔW has rank at most the number of token rows" check.
 */
export function numericalRank(x: tf.Tensor2D, relTol = 1e-4): number {
  const [m, n] = x.shape;
  const data = Float64Array.from(x.dataSync());
  const rows = Array.from({ length: m }, (_, i) => data.subarray(i * n, (i + 1) * n));
  const norm = (v: Float64Array) => Math.sqrt(v.reduce((s, a) => s + a * a, 0));
  const maxNorm = Math.max(...rows.map(norm), 0);
  const basis: Float64Array[] = [];
  for (const r of rows) {
    const v = Float64Array.from(r);
    for (const b of basis) {
      let dot = 0;
      for (let j = 0; j < n; j++) dot += v[j] * b[j];
      for (let j = 0; j < n; j++) v[j] -= dot * b[j];
    }
    const nv = norm(v);
    if (nv > relTol * maxNorm) basis.push(v.map((a) => a / nv));
  }
  return basis.length;
}
