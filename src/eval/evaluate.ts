/**
 * Evaluating editing methods side by side on the same edits and probes (MEND §5; mend-spec §6).
 *
 * Single edits (k = 1), per test record: edit with the record's first training template, then
 *  - es: exact match of the new target on the edit prompt (reliability);
 *  - paraphrase: exact match on the held-out templates (never seen by the editor);
 *  - es_paper: the paper's ES over the edit prompt ∪ all its paraphrases;
 *  - reliability_token / generalization_token: EasyEdit's token-level versions;
 *  - locality: fraction of locality examples whose answer tokens' argmax is unchanged, per class;
 *    locality_token: EasyEdit's token-level version; kl: mean KL(pre ‖ post) per class;
 *  - acc_dd: accuracy (exact match of the true answers of locality examples) before − after;
 *  - ppl_dd: perplexity after − before on held-out world sentences.
 * Batched edits: k records edited in one call, for each k. Sequential edits: N edits one after
 * another, with retention of every earlier edit and locality on a fixed probe set after each.
 */
import * as tf from "@tensorflow/tfjs";
import { TextExample } from "../model/batch";
import { disposeMethodEdit, EditMethod, MethodContext } from "./methods";
import { accuracyDrawdown, editSuccess, mean, meanBy, perplexity, perplexityDrawdown, tokenAccuracy, unchanged, unchangedTokenFraction } from "./metrics";
import { corpusNll, klPerExample, scoreTargets, TargetScore } from "../model/score";
import type { EditedModel } from "../model/languageModel";
import { ModelView, ParamsModel, replaceModel } from "../model/paramsModel";
import type { Params } from "../model/gpt";
import { disposeUpdate } from "../model/weightUpdate";
import { distinctFacts, EditRecord, EditRequest, factKey, LocalityClass, sharesOldAnswer } from "../datasets/editRecord";
import { trainingSplitFacts, trainingSplitProbes, trainingSplitPrompts, World } from "../world/world";

export interface EvalConfig {
  batchSizes: number[];
  /** At most this many batched edits per k. */
  maxBatches: number;
  /** Length of the sequential-edit run (0 = skip). */
  sequential: number;
  /** Records whose cross-effects form the drift heatmap. */
  heatmapEdits: number;
  /** Held-out world sentences used for perplexity. */
  pplSentences: number;
  /** Fixed probe facts for the sequential run. */
  sequentialProbes: number;
}

export const DEFAULT_EVAL_CONFIG: Readonly<EvalConfig> = Object.freeze({
  batchSizes: [1, 5, 25, 75, 125],
  maxBatches: 4,
  sequential: 100,
  heatmapEdits: 30,
  pplSentences: 64,
  sequentialProbes: 60,
});

export interface LocalityStats {
  overall: number;
  same_subject: number;
  same_relation: number;
  unrelated: number;
  /**
   * The same-relation probes whose answer is the edited fact's old answer ("The official language of
   * Guatemala is Spanish" for an edit of Panama's Spanish): a subset of same_relation, the probes a
   * single edit breaks most.
   */
  same_relation_same_answer: number;
}

export interface MethodSummary {
  es: number;
  paraphrase: number;
  es_paper: number;
  reliability_token: number;
  generalization_token: number;
  locality: LocalityStats;
  locality_token: number;
  kl: LocalityStats;
  acc_dd: number;
  ppl_dd: number;
  /**
   * CounterFact-style margins (counterfactMetrics.ts), P = exp(mean per-token log-probability):
   * edit and held-out paraphrases P(new) − P(old), locality probes P(their answer) − P(new).
   */
  magnitude: { edit: number; paraphrase: number; locality: number };
  latency_ms: number;
  /** Mean optimizer steps (fine-tuning methods). */
  steps?: number;
  n_edits: number;
}

/** Per-locality-example drift, for the distribution figures. */
export interface DriftPoint {
  class: LocalityClass;
  /** p(original answer's first token) after − before. */
  dProb: number;
  kl: number;
}

export interface BatchedPoint {
  k: number;
  es: number;
  paraphrase: number;
  locality: number;
  acc_dd: number;
  n_batches: number;
}

export interface SequentialCurve {
  /** After edit i (1-based index i+1): ES over all edits so far on their edit prompts. */
  retention: number[];
  /** After edit i: fraction of fixed probe facts whose answer argmax is unchanged. */
  locality: number[];
  /**
   * After edit i: how far the weights have moved from the base, max over the changed weights of
   * ‖W_i − W_0‖_F / ‖W_0‖_F (empty for a model that is not parameter-backed).
   */
  weightChange: number[];
}

export interface Heatmap {
  /** Edited facts (rows) and probed facts (columns), "subject / relation", sorted by relation. */
  labels: string[];
  /** dp[i][j]: change in p(original answer of fact j) after editing fact i. */
  dp: number[][];
}

export interface EvalResult {
  n_test: number;
  methods: Record<string, MethodSummary>;
  drift: Record<string, DriftPoint[]>;
  heatmap: Record<string, Heatmap>;
  batched: Record<string, BatchedPoint[]>;
  sequential: Record<string, SequentialCurve>;
  elapsed_sec: number;
}

const editRequest = (r: EditRecord): EditRequest => ({ prompt: r.prompts[0], target: r.target_new });

/**
 * What the methods need from the facts world (methods.ts `MethodContext`): FT+KL's locality texts,
 * 16 training-split facts (never evaluated), the training split's prompts, which MEND-batch-pres
 * preserves (measured on `model`), and the training-split facts AlphaEdit preserves.
 */
export function worldMethodContext(world: World, model: ModelView): Pick<MethodContext, "locTexts" | "preserve" | "lifelong"> {
  return { locTexts: trainingSplitProbes(world, 16), preserve: { model, prompts: trainingSplitPrompts(world) }, lifelong: { model, preserve: trainingSplitFacts(world) } };
}

/** Held-out-template sentences of the world for perplexity (deterministic sample). */
export function perplexityText(world: World, n: number): TextExample[] {
  const held = world.corpus().filter((c) => c.group === "heldout");
  const step = Math.max(1, Math.floor(held.length / n));
  return held.filter((_, i) => i % step === 0).slice(0, n).map((c) => ({ prompt: c.prompt, target: c.object }));
}

interface RecordProbes {
  edit: TextExample[];
  heldout: TextExample[];
  trainParaphrases: TextExample[];
  loc: TextExample[];
  locClass: LocalityClass[];
  /** Per locality probe: same relation and the same answer as the edited fact's old answer. */
  locSameAnswer: boolean[];
}

function recordProbes(r: EditRecord): RecordProbes {
  return {
    edit: [{ prompt: r.prompts[0], target: r.target_new }],
    heldout: r.heldout_prompts.map((p) => ({ prompt: p, target: r.target_new })),
    trainParaphrases: r.prompts.slice(1).map((p) => ({ prompt: p, target: r.target_new })),
    loc: r.locality.map((l) => ({ prompt: l.prompt, target: l.target })),
    locClass: r.locality.map((l) => l.class),
    locSameAnswer: r.locality.map((l) => sharesOldAnswer(r, l)),
  };
}

/** P(answer) = exp of the mean per-token log-probability of each (prompt, answer), teacher forced. */
function answerProbs(m: EditedModel, pairs: readonly TextExample[]): number[] {
  return scoreTargets(m, pairs).map((s) => Math.exp(s.logProb / s.argmax.length));
}

/** One record's CounterFact-style margins under the edited model (MethodSummary.magnitude). */
function margins(post: EditedModel, r: EditRecord): { edit: number; paraphrase: number; locality: number } {
  const prompts = [r.prompts[0], ...r.heldout_prompts];
  const p = answerProbs(post, prompts.flatMap((q) => [{ prompt: q, target: r.target_new }, { prompt: q, target: r.target_true }]));
  const diff = prompts.map((_, i) => p[2 * i] - p[2 * i + 1]);
  const l = answerProbs(post, r.locality.flatMap((x) => [{ prompt: x.prompt, target: x.target }, { prompt: x.prompt, target: r.target_new }]));
  return { edit: diff[0], paraphrase: mean(diff.slice(1)), locality: mean(r.locality.map((_, i) => l[2 * i] - l[2 * i + 1])) };
}

/** Evaluate single edits (k = 1) of `method` on `records`; also fills drift points and the heatmap. */
function evalSingle(model: EditedModel, method: EditMethod, records: readonly EditRecord[], ppl: TextExample[], heatmapRecords: readonly EditRecord[]) {
  const base = corpusNll(model, ppl);
  const pplBefore = perplexity(base.nll, base.tokens);
  const rows: { es: number; para: number; esPaper: number; relTok: number; genTok: number; unchanged: number[]; unchangedTok: number[]; kl: number[]; classes: LocalityClass[]; sameAnswer: boolean[]; accPre: number; accPost: number; nllAfter: number; tokensAfter: number; ms: number; steps?: number; mag: { edit: number; paraphrase: number; locality: number } }[] = [];
  const drift: DriftPoint[] = [];
  const heat = heatmapRecords.map((r) => ({ prompt: r.prompts[0], target: r.target_true }));
  const heatPre = scoreTargets(model, heat);
  const dp: number[][] = [];
  for (const r of records) {
    const p = recordProbes(r);
    const pre = scoreTargets(model, p.loc);
    const e = method.edit(model, [editRequest(r)]);
    try {
      const post = e.model;
      const all = [...p.edit, ...p.heldout, ...p.trainParaphrases, ...p.loc];
      const s = scoreTargets(post, all);
      const nE = p.edit.length;
      const nH = p.heldout.length;
      const nT = p.trainParaphrases.length;
      const sEdit = s.slice(0, nE);
      const sHeld = s.slice(nE, nE + nH);
      const sTrain = s.slice(nE + nH, nE + nH + nT);
      const sLoc = s.slice(nE + nH + nT);
      const kl = klPerExample(model, post, p.loc);
      const mag = margins(post, r);
      const after = corpusNll(post, ppl);
      rows.push({
        es: editSuccess(sEdit.map((x) => x.exact)),
        para: editSuccess(sHeld.map((x) => x.exact)),
        esPaper: editSuccess([...sEdit, ...sHeld, ...sTrain].map((x) => x.exact)),
        relTok: tokenAccuracy(sEdit.map((x) => x.tokenAcc)),
        genTok: tokenAccuracy(sHeld.map((x) => x.tokenAcc)),
        unchanged: sLoc.map((x, i) => unchanged(pre[i].argmax, x.argmax)),
        unchangedTok: sLoc.map((x, i) => unchangedTokenFraction(pre[i].argmax, x.argmax)),
        kl,
        classes: p.locClass,
        sameAnswer: p.locSameAnswer,
        accPre: mean(pre.map((x) => (x.exact ? 1 : 0))),
        accPost: mean(sLoc.map((x) => (x.exact ? 1 : 0))),
        nllAfter: after.nll,
        tokensAfter: after.tokens,
        ms: e.latencyMs,
        steps: e.steps,
        mag,
      });
      sLoc.forEach((x, i) => drift.push({ class: p.locClass[i], dProb: x.firstProb - pre[i].firstProb, kl: kl[i] }));
      const row = heatmapRecords.indexOf(r);
      if (row >= 0) {
        const hs: TargetScore[] = scoreTargets(post, heat);
        dp[row] = hs.map((x, j) => x.firstProb - heatPre[j].firstProb); // row i: the edit of labels[i]; column j: the probe of labels[j]
      }
    } finally {
      disposeMethodEdit(e);
    }
  }
  const flat = rows.flatMap((r) => r.classes.map((c, i) => ({ c, u: r.unchanged[i], kl: r.kl[i], sameAnswer: r.sameAnswer[i] })));
  const byClass = (f: (x: (typeof flat)[number]) => number): LocalityStats => {
    const m = meanBy(flat, (x) => x.c, f);
    const sa = flat.filter((x) => x.sameAnswer);
    return { overall: mean(flat.map(f)), same_subject: m.same_subject ?? NaN, same_relation: m.same_relation ?? NaN, unrelated: m.unrelated ?? NaN, same_relation_same_answer: sa.length ? mean(sa.map(f)) : NaN };
  };
  const summary: MethodSummary = {
    es: mean(rows.map((r) => r.es)),
    paraphrase: mean(rows.map((r) => r.para)),
    es_paper: mean(rows.map((r) => r.esPaper)),
    reliability_token: mean(rows.map((r) => r.relTok)),
    generalization_token: mean(rows.map((r) => r.genTok)),
    locality: byClass((x) => x.u),
    locality_token: mean(rows.flatMap((r) => r.unchangedTok)),
    kl: byClass((x) => x.kl),
    acc_dd: accuracyDrawdown(mean(rows.map((r) => r.accPre)), mean(rows.map((r) => r.accPost))),
    // Official: the perplexity of the token-weighted mean NLL over all edits, not a mean of perplexities.
    ppl_dd: perplexityDrawdown(pplBefore, perplexity(rows.reduce((a, r) => a + r.nllAfter, 0), rows.reduce((a, r) => a + r.tokensAfter, 0))),
    magnitude: { edit: mean(rows.map((r) => r.mag.edit)), paraphrase: mean(rows.map((r) => r.mag.paraphrase)), locality: mean(rows.map((r) => r.mag.locality)) },
    latency_ms: mean(rows.map((r) => r.ms)),
    n_edits: rows.length,
  };
  if (rows.some((r) => r.steps !== undefined)) summary.steps = mean(rows.map((r) => r.steps ?? 0));
  const labels = heatmapRecords.map((r) => `${r.subject} / ${r.relation}`);
  return { summary, drift, heatmap: { labels, dp } };
}

/** Batched edits: groups of k distinct facts (consecutive in the split: about five subjects, all their relations) edited in one call. */
function evalBatched(model: EditedModel, method: EditMethod, allRecords: readonly EditRecord[], cfg: EvalConfig): BatchedPoint[] {
  const records = distinctFacts(allRecords);
  const out: BatchedPoint[] = [];
  for (const k of cfg.batchSizes) {
    if (method.maxRequests !== undefined && k > method.maxRequests) continue; // KE edits one request per call
    const nGroups = Math.min(cfg.maxBatches, Math.floor(records.length / k));
    if (nGroups === 0) continue;
    const es: number[] = [];
    const para: number[] = [];
    const loc: number[] = [];
    const dd: number[] = [];
    for (let g = 0; g < nGroups; g++) {
      const group = records.slice(g * k, (g + 1) * k);
      const edited = new Set(group.map((r) => factKey(r)));
      const locEx = group.flatMap((r) => r.locality).filter((l) => !edited.has(factKey(l)));
      const locT = locEx.map((l) => ({ prompt: l.prompt, target: l.target }));
      const pre = scoreTargets(model, locT);
      const e = method.edit(model, group.map(editRequest));
      try {
        const post = e.model;
        es.push(...scoreTargets(post, group.map((r) => ({ prompt: r.prompts[0], target: r.target_new }))).map((x) => (x.exact ? 1 : 0)));
        para.push(...scoreTargets(post, group.flatMap((r) => r.heldout_prompts.map((p) => ({ prompt: p, target: r.target_new })))).map((x) => (x.exact ? 1 : 0)));
        const s = scoreTargets(post, locT);
        loc.push(...s.map((x, i) => unchanged(pre[i].argmax, x.argmax)));
        dd.push(accuracyDrawdown(mean(pre.map((x) => (x.exact ? 1 : 0))), mean(s.map((x) => (x.exact ? 1 : 0)))));
      } finally {
        disposeMethodEdit(e);
      }
    }
    out.push({ k, es: mean(es), paraphrase: mean(para), locality: mean(loc), acc_dd: mean(dd), n_batches: nGroups });
  }
  return out;
}

/** Sequential edits: apply N edits one after another; after each, retention and locality. */
function evalSequential(model: EditedModel, method: EditMethod, records: readonly EditRecord[], probes: TextExample[]): SequentialCurve {
  const preProbe = scoreTargets(model, probes);
  const curve: SequentialCurve = { retention: [], locality: [], weightChange: [] };
  const base = model instanceof ParamsModel ? model.params : null;
  let current: EditedModel = model;
  const done: EditRecord[] = [];
  try {
    for (const r of records) {
      const e = method.edit(current, [editRequest(r)]);
      if (e.update) disposeUpdate(e.update);
      if (e.state) tf.dispose(Object.values(e.state.tensors));
      if (current !== model) replaceModel(current, e.model); // only the newest model is kept
      current = e.model;
      done.push(r);
      curve.retention.push(editSuccess(scoreTargets(current, done.map((d) => ({ prompt: d.prompts[0], target: d.target_new }))).map((x) => x.exact)));
      curve.locality.push(mean(scoreTargets(current, probes).map((x, i) => unchanged(preProbe[i].argmax, x.argmax))));
      if (base && current instanceof ParamsModel) curve.weightChange.push(relativeWeightChange(base, current.params));
    }
  } finally {
    if (current !== model) current.dispose();
  }
  return curve;
}

/** max over the weights that differ of ‖W − W0‖_F / ‖W0‖_F (0 when none differs). */
export function relativeWeightChange(w0: Readonly<Params>, w: Readonly<Params>): number {
  return tf.tidy(() => {
    let worst = 0;
    for (const [n, t] of Object.entries(w)) {
      if (t === w0[n] || !w0[n]) continue;
      const r = tf.div(tf.norm(tf.sub(t, w0[n])), tf.norm(w0[n])).dataSync()[0];
      worst = Math.max(worst, r);
    }
    return worst;
  });
}

/** Run every evaluation for every method on the same records and probes. */
export function evaluateMethods(
  model: EditedModel,
  world: World,
  methods: readonly EditMethod[],
  records: readonly EditRecord[],
  cfg: EvalConfig = DEFAULT_EVAL_CONFIG,
  log: (s: string) => void = () => {},
): EvalResult {
  const t0 = performance.now();
  const ppl = perplexityText(world, cfg.pplSentences);
  const heatRecords = [...records.slice(0, cfg.heatmapEdits)].sort((a, b) => a.relation.localeCompare(b.relation) || a.subject.localeCompare(b.subject));
  const probes = trainingSplitProbes(world, cfg.sequentialProbes);
  const res: EvalResult = { n_test: records.length, methods: {}, drift: {}, heatmap: {}, batched: {}, sequential: {}, elapsed_sec: 0 };
  for (const m of methods) {
    let t = performance.now();
    const single = evalSingle(model, m, records, ppl, heatRecords);
    res.methods[m.name] = single.summary;
    res.drift[m.name] = single.drift;
    res.heatmap[m.name] = single.heatmap;
    log(`${m.name}: single edits of ${records.length} records in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    t = performance.now();
    res.batched[m.name] = evalBatched(model, m, records, cfg);
    log(`${m.name}: batched edits k = ${cfg.batchSizes.join(", ")} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    if (cfg.sequential > 0) {
      t = performance.now();
      res.sequential[m.name] = evalSequential(model, m, records.slice(0, cfg.sequential), probes);
      log(`${m.name}: ${Math.min(cfg.sequential, records.length)} sequential edits in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
  }
  res.elapsed_sec = (performance.now() - t0) / 1000;
  return res;
}

