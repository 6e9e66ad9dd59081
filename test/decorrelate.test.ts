import test from "node:test";
import { extendEditor, extensionsOf, validateExtensions, withKeys } from "../dist/extensions/editorExtensions";
import { preconditionedKeys } from "../dist/extensions/keyPrecond";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { decorrelatedKeys, keyPreconditioners, ridgeInverse } from "../dist/extensions/keyPrecond";
import { disposeEdit, lowRankEdits, mendEdit, transformFactors, updateEditorStats } from "../dist/mend/edit";
import { createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor, editorVariables, lastBlocksMlp } from "../dist/mend/editor";
import { captureFactors, disposeFactors } from "../dist/mend/factor";
import { disposeParams } from "../dist/model/gpt";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { distinctFacts } from "../dist/datasets/editRecord";
import { Rng } from "../dist/model/rng";
import { appliedEdit, getWorld, leaked, maxAbsDiff, setup, tinyModel } from "./helpers";

/** A random symmetric positive definite P [d, d] (a ridge inverse of a random second moment). */
function randomP(d: number, rng: Rng): tf.Tensor2D {
  const C = new Float64Array(d * d);
  for (let s = 0; s < 2 * d; s++) {
    const x = Array.from({ length: d }, () => rng.next() - 0.5);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) C[i * d + j] += x[i] * x[j];
  }
  return tf.tensor2d(Float32Array.from(ridgeInverse(C, d, 0.5)), [d, d]);
}

test("decorrelatedKeys: one request keeps κ = S P; responses on other requests' inputs shrink with β and vanish as β grows; own responses stay", async () => {
  await setup();
  const d = 8;
  const rng = new Rng(5);
  const P = randomP(d, rng);
  const request = [0, 0, 1, 2]; // input rows 0 and 1 are one request's two target tokens
  const base = Array.from({ length: d }, () => rng.next() - 0.5); // a direction every input shares (same relation)
  const V = tf.tensor2d(request.map(() => base.map((b) => b + 0.3 * (rng.next() - 0.5))));
  const S = tf.tidy(() => tf.add(V, tf.mul(0.1, tf.randomNormal(V.shape, 0, 1, "float32", 3)))) as tf.Tensor2D; // the editor's keys, near the inputs
  const other = tf.tensor2d(request.flatMap((i) => request.map((j) => (i === j ? 0 : 1))), [4, 4]);
  const kappa = tf.matMul(S, P) as tf.Tensor2D;
  const lone = decorrelatedKeys(S, V, P, 10, tf.zerosLike(other) as tf.Tensor2D);
  assert.ok(maxAbsDiff(lone, kappa) < 1e-6, "a lone request's keys are S P");
  const responses = (k: tf.Tensor2D) => tf.tidy(() => tf.matMul(k, tf.transpose(V)).arraySync() as number[][]); // [row, input]
  const r0 = responses(kappa);
  const crossSize = (r: number[][]) => r.flatMap((row, i) => row.filter((_, j) => request[i] !== request[j])).reduce((s, x) => s + Math.abs(x), 0);
  let last = crossSize(r0);
  for (const beta of [1, 30, 1e5]) {
    const k = decorrelatedKeys(S, V, P, beta, other);
    const r = responses(k);
    const cross = crossSize(r);
    assert.ok(cross < last, `β ${beta}: cross responses ${cross} should be below ${last}`);
    last = cross;
    if (beta === 1e5) {
      assert.ok(cross < 1e-3 * crossSize(r0), `β ${beta}: cross responses ${cross} should vanish (κ: ${crossSize(r0)})`);
      r.forEach((row, i) => row.forEach((x, j) => request[i] === request[j] && assert.ok(Math.abs(x - r0[i][j]) < 1e-3 * Math.abs(r0[i][j]), `own response (${i}, ${j}) ${x} vs ${r0[i][j]}`)));
    }
    k.dispose();
  }
  assert.throws(() => decorrelatedKeys(S, V, P, 0, other), /β must be > 0/);
  assert.throws(() => decorrelatedKeys(S, V, P, 1, tf.zeros([4, 3]) as tf.Tensor2D), /mask is \[4,3\], expected \[4, 4\]/);
  tf.dispose([P, V, S, other, kappa, lone]);
});

test("batch decorrelation in MEND: a lone edit is unchanged, a batch of calls equals the calls edited alone, the meta-gradient is finite, no leaks", async () => {
  await setup();
  const m = tinyModel(62);
  const inner = lastBlocksMlp(m.config.n_layer, 2);
  const shapes = Object.fromEntries(inner.map((n) => [n, m.params[n].shape]));
  const cfg = { ...DEFAULT_EDITOR_CONFIG, innerParams: inner, rank: 8 };
  const ext = { keyPrecond: 1, batchPrecond: 10, batchLoss: "sum" as const };
  assert.throws(() => validateExtensions({ ...ext, keyPrecond: undefined }), /batchPrecond .* needs keyPrecond/);
  assert.throws(() => validateExtensions({ ...ext, batchPrecond: -1 }), /batchPrecond \(β\) must be a number > 0/);
  const e = createEditor(cfg, shapes, 0);
  const recs = distinctFacts(getWorld().editRecords("train")).slice(0, 30); // one target per fact: a call cannot ask two targets of one prompt
  extendEditor(e, ext, keyPreconditioners(m, inner, recs.map((r) => r.prompts[0]), 1));
  const reqs = recs.map((r) => ({ prompt: r.prompts[0], target: r.target_new }));
  const warm = makeBatch(m.tokenizer, reqs, "target", m.config.n_positions);
  const wf = captureFactors(m.params, m.config, warm, inner, reqs.map((_, i) => i));
  updateEditorStats(e, wf);
  disposeFactors(wf);
  disposeBatch(warm);
  // the editor's output layer is 0 at identity init: give it weights so the keys depend on φ
  const { net } = editorVariables(e);
  for (const [k, v] of Object.entries(net)) if (k.endsWith(".U")) v.assign(tf.tidy(() => tf.mul(0.05, tf.randomNormal(v.shape, 0, 1, "float32", 9))));
  const off = withKeys(e, preconditionedKeys({ precond: extensionsOf(e)!.precond })); // the same editor without batch decorrelation

  const one = [reqs[0]];
  const [a, b] = [mendEdit(m, e, one), mendEdit(m, off, one)].map((r) => appliedEdit(m, r));
  for (const n of inner) assert.ok(maxAbsDiff(a.params[n], b.params[n]) < 1e-6, `lone edit, ${n}`);
  const four = reqs.slice(0, 4);
  const [c, d] = [mendEdit(m, e, four), mendEdit(m, off, four)].map((r) => appliedEdit(m, r));
  assert.ok(inner.some((n) => maxAbsDiff(c.params[n], d.params[n]) > 1e-4), "a batch of 4 is decorrelated");
  [a, b, c, d].forEach((x) => x.dispose());

  // meta-training: one batch holding two calls of two requests each = each call on its own
  const all = makeBatch(m.tokenizer, four, "target", m.config.n_positions);
  const f = captureFactors(m.params, m.config, all, inner, [0, 1, 2, 3]);
  const T = all.inputIds.shape[1];
  const call = (r: number) => (Math.floor(r / T) < 2 ? 0 : 1);
  const together = transformFactors(e, f, call);
  for (const [s, idx] of [[0, [0, 1]], [1, [2, 3]]] as const) {
    const bs = makeBatch(m.tokenizer, idx.map((i) => four[i]), "target", m.config.n_positions);
    const fs = captureFactors(m.params, m.config, bs, inner, [0, 1]);
    const alone = transformFactors(e, fs);
    for (const n of inner) {
      const rows = f.rows[n].map((r, i) => [r, i]).filter(([r]) => call(r) === s).map(([, i]) => i);
      const part = tf.gather(together[n].uTilde, tf.tensor1d(rows, "int32"));
      const scale = Math.max(1, tf.tidy(() => tf.max(tf.abs(alone[n].uTilde)).dataSync()[0]));
      assert.ok(maxAbsDiff(part, alone[n].uTilde) < 1e-4 * scale, `call ${s}, ${n}`);
      part.dispose();
    }
    tf.dispose(Object.values(alone).flatMap((x) => [x.uTilde, x.deltaTilde]));
    disposeFactors(fs);
    disposeBatch(bs);
  }
  tf.dispose(Object.values(together).flatMap((x) => [x.uTilde, x.deltaTilde]));
  // the meta-gradient flows through the decorrelated keys (no gather gradient on wasm) and is finite
  const { grads, value } = tf.variableGrads(() => tf.tidy(() => {
    const up = lowRankEdits(e, f, 1, call);
    return tf.addN(Object.values(up).map((x) => tf.sum(tf.square(x.left)))) as tf.Scalar;
  }), Object.values(net));
  const g = Object.values(grads);
  assert.ok(g.every((t) => tf.tidy(() => tf.all(tf.isFinite(t)).dataSync()[0]) === 1), "finite");
  assert.ok(g.some((t) => tf.tidy(() => tf.max(tf.abs(t)).dataSync()[0]) > 0), "non-zero");
  tf.dispose([...g, value]);
  assert.equal(await leaked(() => { for (let i = 0; i < 3; i++) disposeEdit(mendEdit(m, e, four)); }), 0);
  disposeFactors(f);
  disposeBatch(all);
  disposeEditor(e);
  disposeParams(m.params);
});
