/**
 * Causal tracing (Meng et al., "Locating and Editing Factual Associations in GPT", 2022, §2.1 and
 * Figure 1), in miniature: where in the network does the model recall a fact?
 *
 *  1. clean run: the prompt as it is; p(answer) after it;
 *  2. corrupted run: Gaussian noise added to the embeddings of the subject's tokens, so the model
 *     no longer knows whom the prompt is about; p(answer) falls;
 *  3. corrupted-with-restoration runs: the corrupted run, except that ONE hidden state (one layer,
 *     one token position) is set back to its clean value. Where restoring it brings p(answer) back,
 *     that state carries the fact.
 * Three kinds of state, as ROME: the residual stream after a block ("hidden"), a block's MLP output
 * and its attention output. ROME restores a window of 10 MLP/attention layers at once (GPT-2 XL has
 * 48); with 4 blocks we restore one layer at a time. The noise is 3 × the standard deviation of the
 * subjects' token embeddings, as ROME's; the same noise samples serve every restoration.
 */
import * as tf from "@tensorflow/tfjs";
import { encodeExamples } from "../model/batch";
import { gptForward, HiddenSite } from "../model/gpt";
import { ModelView } from "../model/paramsModel";

export type TraceKind = "hidden" | "mlp" | "attn";
export const TRACE_KINDS: readonly TraceKind[] = ["hidden", "mlp", "attn"];

export interface CausalTrace {
  prompt: string;
  subject: string;
  answer: string;
  /** The input tokens (with <bos> where the tokenizer has one). */
  tokens: string[];
  /** Token positions [start, end) of the subject. */
  subjectRange: [number, number];
  /** p(answer's first token) after the clean prompt, and with the subject corrupted (mean over samples). */
  pClean: number;
  pCorrupt: number;
  /** restored[kind][layer][position]: mean p(answer) with that one state restored. */
  restored: Record<TraceKind, number[][]>;
  noise: number;
  samples: number;
}

export interface TraceOptions {
  /** Standard deviation of the noise on the subject embeddings (see `subjectNoiseLevel`). */
  noise: number;
  /** Noise samples per run (ROME: 10). */
  samples?: number;
  seed?: number;
}

/** 3 × the standard deviation of the token embeddings of these subjects' tokens (ROME's noise level). */
export function subjectNoiseLevel(model: ModelView, subjects: readonly string[]): number {
  const ids = [...new Set(subjects.flatMap((s) => model.tokenizer.encode(s)))];
  if (ids.length === 0) throw new Error("subjectNoiseLevel: no subject tokens");
  return tf.tidy(() => 3 * tf.moments(tf.gather(model.params["wte.weight"], ids)).variance.sqrt().dataSync()[0]);
}

const siteOf = (kind: TraceKind, layer: number): HiddenSite => (kind === "hidden" ? `h.${layer}` : `h.${layer}.${kind}`);

/** Trace where `model` recalls `answer` after `prompt`, whose `subject` is corrupted. */
export function causalTrace(model: ModelView, prompt: string, subject: string, answer: string, opts: TraceOptions): CausalTrace {
  const S = opts.samples ?? 10;
  if (!(opts.noise > 0)) throw new Error(`causalTrace: noise must be a positive number, got ${opts.noise}`);
  // a subject that starts the sentence is capitalised there ("the United States" -> "The United States ...")
  const found = [subject, subject.charAt(0).toUpperCase() + subject.slice(1)].map((s) => prompt.indexOf(s)).find((i) => i >= 0);
  if (subject === "" || found === undefined) throw new Error(`causalTrace: the subject "${subject}" does not occur in the prompt "${prompt}"`);
  const at = found;
  const tok = model.tokenizer;
  const a = encodeExamples(tok, [{ prompt, target: answer }], "target", model.config.n_positions);
  const label = a.targetPositions[0][0]; // the position whose next token is the answer's first
  const answerId = a.labels[0][label];
  const T = label + 1; // the prompt's tokens; later positions cannot influence the answer
  const ids = a.inputIds[0].slice(0, T);
  const bos = tok.bosId === null ? 0 : 1;
  const start = bos + tok.encode(prompt.slice(0, at).trimEnd()).length;
  const end = bos + tok.encode(prompt.slice(0, at + subject.length)).length;
  const C = model.config.n_embd;
  const L = model.config.n_layer;

  return tf.tidy(() => {
    const pAnswer = (logits: tf.Tensor3D) => tf.softmax(tf.squeeze(tf.slice(logits, [0, T - 1, 0], [-1, 1, -1]), [1])).gather([answerId], 1).reshape([-1]); // [B]
    // clean run: record every state
    const clean = new Map<HiddenSite, tf.Tensor2D>();
    const one = tf.tensor2d([ids], [1, T], "int32");
    const cleanLogits = gptForward(model.params, model.config, one, { intervene: (site, x) => (clean.set(site, x), x) }).logits;
    const pClean = pAnswer(cleanLogits).dataSync()[0];
    // noise on the subject's embeddings, one sample per row group: noise [S·T, C], zero outside the subject
    const z = tf.randomNormal([S, end - start, C], 0, opts.noise, "float32", opts.seed ?? 1);
    const padded = tf.pad(z, [[0, 0], [start, T - end], [0, 0]]).reshape([S * T, C]) as tf.Tensor2D; // rows (sample, position)
    const corrupt = gptForward(model.params, model.config, tf.tile(one, [S, 1]) as tf.Tensor2D, { intervene: (site, x) => (site === "embed" ? tf.add(x, padded) : x) as tf.Tensor2D }).logits;
    const pCorrupt = tf.mean(pAnswer(corrupt)).dataSync()[0];
    // restoration runs, for positions from the subject on (earlier states do not see the noise:
    // restoring them changes nothing, p stays pCorrupt). For one site, rows (position, sample):
    // row group j restores position start + j.
    const P = T - start;
    const B = P * S;
    const rowsIds = tf.tile(one, [B, 1]) as tf.Tensor2D;
    const noiseB = tf.tile(padded, [P, 1]) as tf.Tensor2D; // [B·T, C]
    const mask = Array.from({ length: B * T }, (_, r) => (start + Math.floor(Math.floor(r / T) / S) === r % T ? 1 : 0)); // row r: (b = j·S + s, position r % T)
    const restore = tf.cast(tf.tile(tf.tensor2d(mask, [B * T, 1]), [1, C]), "bool");
    const restored = {} as Record<TraceKind, number[][]>;
    for (const kind of TRACE_KINDS) {
      restored[kind] = [];
      for (let l = 0; l < L; l++) {
        const site = siteOf(kind, l);
        const cleanRows = tf.tile(clean.get(site)!, [B, 1]) as tf.Tensor2D;
        const logits = gptForward(model.params, model.config, rowsIds, {
          intervene: (s, x) => (s === "embed" ? tf.add(x, noiseB) : s === site ? tf.where(restore, cleanRows, x) : x) as tf.Tensor2D,
        }).logits;
        const p = pAnswer(logits).reshape([P, S]).mean(1).arraySync() as number[];
        restored[kind].push([...new Array(start).fill(pCorrupt), ...p]);
      }
    }
    const tokens = ids.map((i) => tok.token(i));
    return { prompt, subject, answer, tokens, subjectRange: [start, end] as [number, number], pClean, pCorrupt, restored, noise: opts.noise, samples: S };
  });
}

/** ROME's token groups (Figure 1's rows when averaged over facts). */
export const TOKEN_GROUPS = ["first subject token", "middle subject tokens", "last subject token", "first subsequent token", "further tokens", "last token"] as const;

/** The positions of each of ROME's token groups in a trace (a position may be in two groups, as in ROME). */
function groupPositions(trace: CausalTrace): number[][] {
  const [s, e] = trace.subjectRange;
  const T = trace.tokens.length;
  const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
  return [[s], range(s + 1, e - 1), [e - 1], e < T ? [e] : [], range(e + 1, T - 1), [T - 1]];
}

export interface AverageTrace {
  /** [kind][layer][group]: mean over facts of (p restored − p corrupted); NaN where no fact has that group. */
  effect: Record<TraceKind, number[][]>;
  groups: readonly string[];
  pClean: number;
  pCorrupt: number;
  facts: number;
}

const avg = (xs: readonly number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;

/** Average indirect effects (p restored − p corrupted) over traces by ROME's token groups: per fact, then over facts. */
export function averageTrace(traces: readonly CausalTrace[]): AverageTrace {
  if (traces.length === 0) throw new Error("averageTrace: no traces");
  const L = traces[0].restored.hidden.length;
  const effect = {} as Record<TraceKind, number[][]>;
  for (const kind of TRACE_KINDS) {
    effect[kind] = Array.from({ length: L }, (_, l) =>
      TOKEN_GROUPS.map((_, g) => {
        const perFact = traces.flatMap((tr) => {
          const xs = groupPositions(tr)[g].map((t) => tr.restored[kind][l][t] - tr.pCorrupt);
          return xs.length ? [avg(xs)] : []; // a fact's tokens of one group count once
        });
        return perFact.length ? avg(perFact) : NaN;
      }),
    );
  }
  const mean = (f: (t: CausalTrace) => number) => traces.reduce((x, t) => x + f(t), 0) / traces.length;
  return { effect, groups: TOKEN_GROUPS, pClean: mean((t) => t.pClean), pCorrupt: mean((t) => t.pCorrupt), facts: traces.length };
}
