import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createStats, disposeStats, normalizeFactors, stdOf, updateStats } from "../dist/mend/stats";
import { setup } from "./helpers";

test("batched Chan merge equals the two-pass mean and unbiased variance over all rows", async () => {
  await setup();
  const s = createStats(3, 2);
  const us = [tf.randomNormal([4, 3], 1, 2, "float32", 1), tf.randomNormal([1, 3], -1, 1, "float32", 2), tf.randomNormal([7, 3], 3, 0.5, "float32", 3)];
  const ds = [tf.randomNormal([4, 2], 0, 1, "float32", 4), tf.randomNormal([1, 2], 0, 1, "float32", 5), tf.randomNormal([7, 2], 0, 1, "float32", 6)];
  us.forEach((u, i) => updateStats(s, u as tf.Tensor2D, ds[i] as tf.Tensor2D));
  assert.equal(s.count, 12);
  const all = tf.concat(us, 0);
  const rows = all.arraySync() as number[][];
  for (let j = 0; j < 3; j++) {
    const col = rows.map((r) => r[j]);
    const mean = col.reduce((a, b) => a + b, 0) / col.length;
    const varU = col.reduce((a, b) => a + (b - mean) ** 2, 0) / (col.length - 1);
    assert.ok(Math.abs(s.u.mean.arraySync()[j] - mean) < 1e-5);
    const sd = stdOf(s.u, s.count);
    assert.ok(Math.abs(sd.arraySync()[j] - Math.sqrt(varU)) < 1e-4);
    sd.dispose();
  }
  const { uBar, deltaBar } = normalizeFactors(s, all as tf.Tensor2D, tf.concat(ds, 0) as tf.Tensor2D);
  const m = tf.moments(uBar, 0);
  assert.ok(Math.max(...(m.mean.arraySync() as number[]).map(Math.abs)) < 1e-4, "normalised inputs have zero mean");
  tf.dispose([uBar, deltaBar, m.mean, m.variance, all, ...us, ...ds]);
  disposeStats(s);
});

test("normalising before two rows were seen is an error", async () => {
  await setup();
  const s = createStats(2, 2);
  const u = tf.ones([1, 2]) as tf.Tensor2D;
  updateStats(s, u, u);
  assert.throws(() => normalizeFactors(s, u, u), /seen 1 row\(s\); at least 2/);
  assert.throws(() => updateStats(s, tf.ones([2, 3]) as tf.Tensor2D, tf.ones([2, 2]) as tf.Tensor2D), /do not match/);
  u.dispose();
  disposeStats(s);
});

test("normalisation follows each statistics update (the cached σ is replaced, not reused) and frees it", async () => {
  await setup();
  const s = createStats(3, 2);
  const u1 = tf.randomNormal([5, 3], 0, 1, "float32", 11) as tf.Tensor2D, d1 = tf.randomNormal([5, 2], 0, 1, "float32", 12) as tf.Tensor2D;
  const u2 = tf.randomNormal([6, 3], 4, 3, "float32", 13) as tf.Tensor2D, d2 = tf.randomNormal([6, 2], -2, 5, "float32", 14) as tf.Tensor2D;
  updateStats(s, u1, d1);
  const first = normalizeFactors(s, u2, d2); // caches σ of the first batch
  updateStats(s, u2, d2);
  const before = tf.memory().numTensors;
  const again = normalizeFactors(s, u2, d2); // must use the merged statistics
  assert.equal(tf.memory().numTensors, before + 2 + 2, "two outputs, plus σ + 1e-7 of u and δ cached once");
  const third = normalizeFactors(s, u2, d2);
  assert.equal(tf.memory().numTensors, before + 2 + 2 + 2, "frozen statistics: σ is not recomputed");
  const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).arraySync() as number);
  const expected = tf.tidy(() => tf.div(tf.sub(u2, s.u.mean), tf.add(stdOf(s.u, s.count), 1e-7)));
  assert.ok(maxDiff(again.uBar, expected) < 1e-5, "normalised with the updated statistics");
  assert.ok(maxDiff(again.uBar, first.uBar) > 0.1, "not with the stale ones");
  tf.dispose([first.uBar, first.deltaBar, again.uBar, again.deltaBar, third.uBar, third.deltaBar, expected, u1, d1, u2, d2]);
  const live = tf.memory().numTensors;
  disposeStats(s);
  assert.equal(tf.memory().numTensors, live - 6, "mean, M2 and cached σ of u and δ are freed");
});
