/**
 * The cache baseline (the MEND paper's Table 11): no weight changes at all. Each edit stores its
 * input's representation and its answer; a query whose representation lies within ε of a stored
 * edit's gets that edit's answer, every other query the base model's. ε* is chosen on validation
 * edits; the paper also reports half and twice ε*.
 *
 * The representation (`CacheKeying`) is the base model's residual stream after one block, averaged
 * over the prompt's tokens (without <bos>) or taken at its last token; distances are Euclidean.
 * `chooseCache` picks it on validation edits among both poolings after every block (the paper leaves
 * the representation open; the mean-pooled last block, `defaultCacheKeying`, mixes up paraphrases
 * and neighbours on the facts world). ε* is the threshold that best tells
 * a validation edit's held-out paraphrases (which should hit) from its locality prompts (which should
 * not): the one with the highest mean of the two rates (docs/deviations.md). The cached model is an
 * `EditedModel` (model/languageModel.ts): every evaluator scores it like any other model, and it
 * answers a hit with probability 1 on the stored answer's tokens, teacher forced.
 * Shapes: B rows, T time, C width, K cached edits.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, BatchArrays, disposeBatch, encodeExamples, toBatch } from "../model/batch";
import { nearestWithin } from "../model/distances";
import { gptForward } from "../model/gpt";
import type { EditedModel, LanguageModel, MethodState } from "../model/languageModel";
import { ModelView, ParamsModel } from "../model/paramsModel";
import { continuation } from "../model/tokenizer";
import { EditRecord, EditRequest, validateRequests } from "../datasets/editRecord";

/**
 * A hit's logits: 0 on the cached answer's token, −HIT_MARGIN on every other, so the answer has
 * probability 1 − (V − 1)e^−20 and any other token costs 20 nats (finite: perplexity stays defined).
 */
const HIT_MARGIN = 20;

/** What a cached prompt is keyed on: the residual stream after block `layer`, averaged over the prompt's tokens or at its last. */
export interface CacheKeying {
  pooling: "mean" | "last";
  layer: number;
}

/** The last block's residual, mean-pooled over the prompt: the keying of a cache built without a choice on validation edits. */
export function defaultCacheKeying(model: ModelView): CacheKeying {
  return { pooling: "mean", layer: model.config.n_layer - 1 };
}

function checkKeying(model: ModelView, k: CacheKeying): void {
  if (k.pooling !== "mean" && k.pooling !== "last") throw new Error(`cache: pooling must be "mean" or "last", got ${JSON.stringify(k.pooling)}`);
  if (!(Number.isSafeInteger(k.layer) && k.layer >= 0 && k.layer < model.config.n_layer)) throw new Error(`cache: layer must be a block index from 0 to ${model.config.n_layer - 1}, got ${k.layer}`);
}

/** The logits and the prompt representation [B, C] of a batch, from one forward pass. Inside the caller's tidy. */
function forwardWithKeys(model: ModelView, batch: Batch, arrays: BatchArrays, keying: CacheKeying): { logits: tf.Tensor3D; keys: tf.Tensor2D } {
  const { logits, keys } = forwardWithKeyings(model, batch, arrays, [keying]);
  return { logits, keys: keys[0] };
}

/** The logits and one prompt representation [B, C] per keying, all from one forward pass. Inside the caller's tidy. */
function forwardWithKeyings(model: ModelView, batch: Batch, arrays: BatchArrays, keyings: readonly CacheKeying[]): { logits: tf.Tensor3D; keys: tf.Tensor2D[] } {
  const hidden = new Map<string, tf.Tensor2D>();
  const sites = new Set(keyings.map((k) => `h.${k.layer}`));
  const logits = gptForward(model.params, model.config, batch.inputIds, { attentionMask: batch.attentionMask, intervene: (at, x) => (sites.has(at) && hidden.set(at, x), x) }).logits;
  const [B, T] = batch.inputIds.shape;
  const from = model.tokenizer.bosId === null ? 0 : 1;
  // a weight per position [B, 1, T]: 1/n over the prompt's tokens (mean), or 1 at its last token
  const weights = new Map<CacheKeying["pooling"], tf.Tensor3D>();
  const weightsOf = (pooling: CacheKeying["pooling"]) => {
    if (!weights.has(pooling)) weights.set(pooling, tf.tensor3d(arrays.lastPosition.flatMap((lp) => Array.from({ length: T }, (_, t) => (pooling === "last" ? (t === lp ? 1 : 0) : t >= from && t <= lp ? 1 / (lp - from + 1) : 0))), [B, 1, T]));
    return weights.get(pooling)!;
  };
  const keys = keyings.map((k) => tf.reshape(tf.matMul(weightsOf(k.pooling), tf.reshape(hidden.get(`h.${k.layer}`)!, [B, T, -1])), [B, -1]) as tf.Tensor2D);
  return { logits, keys };
}

/** The prompt representations of texts [B, C] (by default the tables' keying); the caller owns the tensor. */
export function promptKeys(model: ModelView, prompts: readonly string[], keying: CacheKeying = defaultCacheKeying(model)): tf.Tensor2D {
  checkKeying(model, keying);
  const a = encodeExamples(model.tokenizer, prompts.map((p) => ({ prompt: p, target: "" })), "none", model.config.n_positions);
  const b = toBatch(a);
  try {
    return tf.tidy(() => forwardWithKeys(model, b, a, keying).keys);
  } finally {
    disposeBatch(b);
  }
}

/** A model answering from a cache of edits, the base model elsewhere. Owns its keys (`dispose`). */
export class CachedModel implements EditedModel {
  readonly state: MethodState;

  /**
   * @param base the model the cache sits on (not owned)
   * @param keys [K, C] the cached prompts' representations (owned from here on)
   * @param answers the cached answers' token ids (as they follow their prompts)
   */
  constructor(readonly base: ModelView, readonly keys: tf.Tensor2D, readonly answers: readonly (readonly number[])[], readonly threshold: number, readonly keying: CacheKeying = defaultCacheKeying(base)) {
    this.state = { method: "cache", tensors: { keys }, meta: { answers: answers.map((a) => [...a]), threshold, keying: { ...keying } } };
  }

  get config() {
    return this.base.config;
  }

  get tokenizer() {
    return this.base.tokenizer;
  }

  /** For each row, the cached edit it hits (nearest within the threshold) or -1. */
  hits(batch: Batch, arrays: BatchArrays): number[] {
    return tf.tidy(() => this.nearest(forwardWithKeys(this.base, batch, arrays, this.keying).keys));
  }

  private nearest(q: tf.Tensor2D): number[] {
    return nearestWithin(q, this.keys, () => this.threshold);
  }

  logits(batch: Batch, arrays: BatchArrays): tf.Tensor3D {
    const { logits, keys } = forwardWithKeys(this.base, batch, arrays, this.keying);
    const hit = this.nearest(keys);
    if (hit.every((h) => h < 0)) return logits;
    const [B, T, V] = logits.shape;
    // a hit answers its cached tokens with certainty from the end of the prompt on
    const mask = new Float32Array(B * T);
    const answer = new Int32Array(B * T);
    hit.forEach((k, b) => {
      if (k < 0) return;
      this.answers[k].forEach((id, j) => {
        const t = arrays.lastPosition[b] + j;
        if (t < T) {
          mask[b * T + t] = 1;
          answer[b * T + t] = id;
        }
      });
    });
    const m = tf.tensor3d(mask, [B, T, 1]);
    const forced = tf.mul(tf.sub(tf.oneHot(tf.tensor2d(answer, [B, T], "int32"), V).toFloat(), 1), HIT_MARGIN) as tf.Tensor3D; // 0 on the answer, −HIT_MARGIN elsewhere
    return tf.add(tf.mul(m, forced), tf.mul(tf.sub(1, m), logits)) as tf.Tensor3D;
  }

  dispose(): void {
    this.keys.dispose();
  }
}

/** A cache of `requests` on `model` (or, when `model` is already a cache, its entries plus these, keyed as it keys). */
export function cacheEdit(model: LanguageModel, requests: readonly EditRequest[], threshold: number, keying?: CacheKeying): CachedModel {
  validateRequests(requests);
  if (!(Number.isFinite(threshold) && threshold >= 0)) throw new Error(`cache: the threshold must be a non-negative number, got ${threshold}`);
  const prior = model instanceof CachedModel ? model : null;
  const base = prior ? prior.base : model;
  if (!(base instanceof ParamsModel)) throw new Error(`the cache sits on a parameter-backed model; this one is ${base.constructor.name}`);
  const keyBy = keying ?? prior?.keying ?? defaultCacheKeying(base);
  if (prior && (prior.keying.pooling !== keyBy.pooling || prior.keying.layer !== keyBy.layer)) throw new Error(`cache: this cache keys on ${describeKeying(prior.keying)}; new entries keyed on ${describeKeying(keyBy)} could not be compared with its entries`);
  const fresh = promptKeys(base, requests.map((r) => r.prompt), keyBy);
  const answers = requests.map((r) => base.tokenizer.encode(continuation(r.prompt, r.target)));
  const keys = prior ? tf.tidy(() => tf.concat([prior.keys, fresh], 0) as tf.Tensor2D) : fresh;
  if (prior) fresh.dispose();
  return new CachedModel(base, keys, [...(prior?.answers ?? []), ...answers], threshold, keyBy);
}

/** "the mean of block 3's residual over the prompt", "block 3's residual at the prompt's last token". */
export function describeKeying(k: CacheKeying): string {
  return k.pooling === "mean" ? `the mean of block ${k.layer}'s residual over the prompt` : `block ${k.layer}'s residual at the prompt's last token`;
}

export interface CacheThreshold {
  threshold: number;
  paraphraseHits: number;
  localityMisses: number;
}

/** Per keying, the distances of each validation record's held-out paraphrases (`pos`) and locality prompts (`neg`) from its edit prompt; one forward pass per record for all keyings. */
function validationDistances(model: ModelView, records: readonly EditRecord[], keyings: readonly CacheKeying[]): { pos: number[]; neg: number[] }[] {
  if (records.length === 0) throw new Error("cacheThreshold: no validation records");
  keyings.forEach((k) => checkKeying(model, k));
  const out = keyings.map(() => ({ pos: [] as number[], neg: [] as number[] }));
  for (const r of records) {
    const texts = [r.prompts[0], ...r.heldout_prompts, ...r.locality.map((l) => l.prompt)];
    const a = encodeExamples(model.tokenizer, texts.map((p) => ({ prompt: p, target: "" })), "none", model.config.n_positions);
    const b = toBatch(a);
    try {
      const ds = tf.tidy(() => forwardWithKeyings(model, b, a, keyings).keys.map((k) => tf.norm(tf.sub(k, tf.slice(k, [0, 0], [1, -1])), "euclidean", 1).arraySync() as number[]));
      ds.forEach((d, i) => {
        out[i].pos.push(...d.slice(1, 1 + r.heldout_prompts.length));
        out[i].neg.push(...d.slice(1 + r.heldout_prompts.length));
      });
    } finally {
      disposeBatch(b);
    }
  }
  return out;
}

/** The threshold with the best mean of paraphrase hits (distance ≤ ε) and locality misses (> ε). */
function bestThreshold({ pos, neg }: { pos: number[]; neg: number[] }): CacheThreshold {
  const candidates = [...new Set([...pos, ...neg])].sort((a, b) => a - b);
  let best = { threshold: 0, paraphraseHits: 0, localityMisses: 1, score: -1 };
  for (const t of candidates) {
    const hits = pos.filter((x) => x <= t).length / pos.length;
    const misses = neg.filter((x) => x > t).length / neg.length;
    if ((hits + misses) / 2 > best.score) best = { threshold: t, paraphraseHits: hits, localityMisses: misses, score: (hits + misses) / 2 };
  }
  return { threshold: best.threshold, paraphraseHits: best.paraphraseHits, localityMisses: best.localityMisses };
}

/** ε*: on validation records, the threshold with the best mean of paraphrase hits and locality misses (by default for the last block mean-pooled). */
export function cacheThreshold(model: ModelView, records: readonly EditRecord[], keying: CacheKeying = defaultCacheKeying(model)): CacheThreshold {
  return bestThreshold(validationDistances(model, records, [keying])[0]);
}

/**
 * Each keying (by default: mean-pooled and last-token, after every block) with its ε* on validation
 * records and what that threshold separates there, best mean of the two rates first.
 */
export function compareCacheKeyings(model: ModelView, records: readonly EditRecord[], keyings?: readonly CacheKeying[]): (CacheKeying & CacheThreshold)[] {
  const all = keyings ?? (["mean", "last"] as const).flatMap((pooling) => Array.from({ length: model.config.n_layer }, (_, layer) => ({ pooling, layer })));
  const dists = validationDistances(model, records, all);
  return all.map((k, i) => ({ ...k, ...bestThreshold(dists[i]) })).sort((a, b) => b.paraphraseHits + b.localityMisses - (a.paraphraseHits + a.localityMisses));
}

/** The cache's settings chosen on validation records: the keying with the best mean of paraphrase hits and locality misses at its ε*, and every keying measured. */
export interface CacheChoice extends CacheThreshold {
  keying: CacheKeying;
  candidates: (CacheKeying & CacheThreshold)[];
}

/** Choose the cache's keying and ε* on validation records (`compareCacheKeyings`' best). */
export function chooseCache(model: ModelView, records: readonly EditRecord[]): CacheChoice {
  const candidates = compareCacheKeyings(model, records);
  const best = candidates[0];
  return { keying: { pooling: best.pooling, layer: best.layer }, threshold: best.threshold, paraphraseHits: best.paraphraseHits, localityMisses: best.localityMisses, candidates };
}
