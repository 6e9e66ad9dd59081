/** The cache baseline (src/baselines/cache.ts): hits, misses, ε*. */
import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { cacheEdit, cacheThreshold, CachedModel, chooseCache, compareCacheKeyings, promptKeys } from "../dist/baselines/cache";
import { scoreTargets } from "../dist/model/score";
import { getWorld, leaked, setup, tinyModel } from "./helpers";

const req = { prompt: "The capital of Peru is", target: "Madrid" };

test("a cached edit answers its own prompt with the stored answer and leaves a far query to the base model", async () => {
  await setup();
  const m = tinyModel(71);
  const far = { prompt: "The president of Germany is", target: "Merkel" };
  const pre = scoreTargets(m, [req, far]);
  const keys = promptKeys(m, [req.prompt, far.prompt]);
  const dist = tf.tidy(() => tf.norm(tf.sub(keys.slice([0, 0], [1, -1]), keys.slice([1, 0], [1, -1]))).dataSync()[0]);
  keys.dispose();
  const cached = cacheEdit(m, [req], dist / 2); // the far query is outside the threshold
  const post = scoreTargets(cached, [req, far]);
  assert.equal(pre[0].exact, false, "the random model does not know the edit");
  assert.equal(post[0].exact, true, "a hit answers with the cached answer");
  assert.ok(post[0].logProb > -1e-3, `the answer's probability is about 1 (log-prob ${post[0].logProb})`);
  assert.deepEqual(post[1].argmax, pre[1].argmax, "a miss is the base model's answer");
  assert.ok(Math.abs(post[1].logProb - pre[1].logProb) < 1e-4);
  // a second edit on the cached model keeps the first entry; threshold 0 hits only identical prompts
  const twice = cacheEdit(cached, [far], dist / 2);
  assert.ok(twice instanceof CachedModel);
  const both = scoreTargets(twice, [req, far]);
  assert.deepEqual([both[0].exact, both[1].exact], [true, true]);
  twice.dispose();
  cached.dispose();
  assert.throws(() => cacheEdit(m, [req], -1), /non-negative/);
  m.dispose();
});

test("repeated cached edits leak no tensors", async () => {
  await setup();
  const m = tinyModel(72);
  const n = await leaked(() => {
    const c = cacheEdit(m, [req], 1);
    scoreTargets(c, [req]);
    c.dispose();
  });
  assert.equal(n, 0);
  m.dispose();
});

test("ε* is the threshold with the best mean of paraphrase hits and locality misses on validation records", async () => {
  await setup();
  const m = tinyModel(73);
  const records = getWorld().editRecords("val").slice(0, 6);
  const r = cacheThreshold(m, records);
  // recompute the rates at the chosen threshold, and check no candidate distance does better
  const pos: number[] = [];
  const neg: number[] = [];
  for (const rec of records) {
    const k = promptKeys(m, [rec.prompts[0], ...rec.heldout_prompts, ...rec.locality.map((l) => l.prompt)]);
    const d = tf.tidy(() => tf.norm(tf.sub(k, k.slice([0, 0], [1, -1])), "euclidean", 1).arraySync() as number[]);
    k.dispose();
    pos.push(...d.slice(1, 1 + rec.heldout_prompts.length));
    neg.push(...d.slice(1 + rec.heldout_prompts.length));
  }
  const score = (t: number) => (pos.filter((x) => x <= t).length / pos.length + neg.filter((x) => x > t).length / neg.length) / 2;
  assert.ok(Math.abs(r.paraphraseHits - pos.filter((x) => x <= r.threshold).length / pos.length) < 1e-12);
  for (const t of [...pos, ...neg]) assert.ok(score(t) <= score(r.threshold) + 1e-12, `threshold ${t} would score better`);
  assert.throws(() => cacheThreshold(m, []), /no validation records/);
  m.dispose();
});

test("a cache keys on a chosen block's residual, mean-pooled or at the prompt's last token; keyings are compared on validation", async () => {
  await setup();
  const m = tinyModel(74);
  const prompts = [req.prompt, "The president of Germany is"];
  // the residual after block 1 at every position, from the forward pass itself
  const { encodeExamples, toBatch, disposeBatch } = await import("../dist/model/batch");
  const { gptForward } = await import("../dist/model/gpt");
  const a = encodeExamples(m.tokenizer, prompts.map((p) => ({ prompt: p, target: "" })), "none", m.config.n_positions);
  const b = toBatch(a);
  let hidden: number[][] = [];
  tf.tidy(() => {
    gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask, intervene: (site, x) => (site === "h.1" && (hidden = x.arraySync() as number[][]), x) });
  });
  disposeBatch(b);
  const T = a.inputIds[0].length;
  const last = promptKeys(m, prompts, { pooling: "last", layer: 1 });
  const mean = promptKeys(m, prompts, { pooling: "mean", layer: 1 });
  const [lastRows, meanRows] = [last.arraySync(), mean.arraySync()];
  tf.dispose([last, mean]);
  prompts.forEach((_, i) => {
    const lp = a.lastPosition[i];
    const rows = hidden.slice(i * T, (i + 1) * T);
    lastRows[i].forEach((x, c) => assert.ok(Math.abs(x - rows[lp][c]) < 1e-5, "last token"));
    const from = m.tokenizer.bosId === null ? 0 : 1;
    const avg = (c: number) => rows.slice(from, lp + 1).reduce((s, r) => s + r[c], 0) / (lp + 1 - from);
    meanRows[i].forEach((x, c) => assert.ok(Math.abs(x - avg(c)) < 1e-5, "mean over the prompt"));
  });
  // the default is the tables' keying; a cache extended with another keying is refused
  const cached = cacheEdit(m, [req], 1);
  assert.deepEqual(cached.keying, { pooling: "mean", layer: m.config.n_layer - 1 });
  assert.throws(() => cacheEdit(cached, [{ prompt: "The capital of Chile is", target: "Rome" }], 1, { pooling: "last", layer: 1 }), new RegExp(`this cache keys on the mean of block ${m.config.n_layer - 1}'s residual over the prompt`));
  cached.dispose();
  assert.throws(() => promptKeys(m, prompts, { pooling: "last", layer: 9 }), new RegExp(`layer must be a block index from 0 to ${m.config.n_layer - 1}, got 9`));
  // every keying's ε* and rates, best first
  const records = getWorld().editRecords("val").slice(0, 4);
  const rows = compareCacheKeyings(m, records);
  assert.equal(rows.length, 2 * m.config.n_layer);
  const mine = cacheThreshold(m, records, { pooling: "last", layer: 0 });
  assert.deepEqual(rows.find((r) => r.pooling === "last" && r.layer === 0), { pooling: "last", layer: 0, ...mine });
  rows.slice(1).forEach((r, i) => assert.ok(r.paraphraseHits + r.localityMisses <= rows[i].paraphraseHits + rows[i].localityMisses));
  // the cache of the registry, the tables and the lab: the best keying with its ε*
  const choice = chooseCache(m, records);
  assert.deepEqual({ keying: choice.keying, threshold: choice.threshold }, { keying: { pooling: rows[0].pooling, layer: rows[0].layer }, threshold: rows[0].threshold });
  assert.deepEqual(choice.candidates, rows);
  m.dispose();
});
