/** The cache baseline (src/baselines/cache.ts): hits, misses, ε*. */
import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { cacheEdit, cacheThreshold, CachedModel, promptKeys } from "../dist/baselines/cache";
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
