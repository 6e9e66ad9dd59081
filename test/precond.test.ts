import test from "node:test";
import { extendEditor, extensionsOf, loadEditor } from "../dist/extensions/editorExtensions";
import { loadEditor as loadOfficialEditor } from "../dist/mend/editorFolder";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { keyPreconditioners, ridgeInverse } from "../dist/extensions/keyPrecond";
import { disposeEdit, mendEdit, transformFactors, updateEditorStats } from "../dist/mend/edit";
import { createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor, lastBlocksMlp } from "../dist/mend/editor";
import { saveEditor } from "../dist/mend/editorFolder";
import { captureFactors, disposeFactors } from "../dist/mend/factor";
import { disposeParams } from "../dist/model/gpt";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { Rng } from "../dist/model/rng";
import { appliedEdit, getWorld, leaked, maxAbsDiff, setup, tinyModel } from "./helpers";

test("ridgeInverse: P (C + λsI) = s I, s = tr(C)/d, and P = I for C = cI", () => {
  const d = 7;
  const rng = new Rng(3);
  const X = Array.from({ length: 5 }, () => Array.from({ length: d }, () => rng.next() - 0.5)); // rank 5 < d: only the ridge makes C invertible
  const C = new Float64Array(d * d);
  for (const x of X) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) C[i * d + j] += x[i] * x[j] / X.length;
  const lam = 0.3;
  const P = ridgeInverse(C, d, lam);
  let s = 0;
  for (let i = 0; i < d; i++) s += C[i * d + i] / d;
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let v = 0;
      for (let k = 0; k < d; k++) v += P[i * d + k] * (C[k * d + j] + (k === j ? lam * s : 0));
      assert.ok(Math.abs(v - (i === j ? s : 0)) < 1e-9 * s, `(${i}, ${j}): ${v}`);
      assert.ok(Math.abs(P[i * d + j] - P[j * d + i]) < 1e-9, "symmetric");
    }
  }
  const iso = new Float64Array(d * d);
  for (let i = 0; i < d; i++) iso[i * d + i] = 2.5;
  const Pi = ridgeInverse(iso, d, lam);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) assert.ok(Math.abs(Pi[i * d + j] - (i === j ? 1 / (1 + lam) : 0)) < 1e-12);
  assert.throws(() => ridgeInverse(C, d, 0), /λ must be > 0/);
  assert.throws(() => ridgeInverse(C, d + 1, 1), /expected 8x8/);
});

test("key preconditioning: at identity init the key is (u - μ) P; P is saved, loaded and measured on the base model", async () => {
  await setup();
  const m = tinyModel(61);
  const inner = lastBlocksMlp(m.config.n_layer, 2);
  const shapes = Object.fromEntries(inner.map((n) => [n, m.params[n].shape]));
  const e = createEditor({ ...DEFAULT_EDITOR_CONFIG, innerParams: inner, rank: 8 }, shapes, 0);
  const recs = getWorld().editRecords("train").slice(0, 30);
  const b = makeBatch(m.tokenizer, recs.map((r) => ({ prompt: r.prompts[0], target: r.target_new })), "target", m.config.n_positions);
  const f = captureFactors(m.params, m.config, b, inner, recs.map((_, i) => i));
  updateEditorStats(e, f);
  // measured P: [d_in, d_in], symmetric, not the identity
  const P = keyPreconditioners(m, inner, recs.map((r) => r.prompts[0]), 1);
  for (const n of inner) {
    assert.deepEqual(P[n].shape, [m.params[n].shape[0], m.params[n].shape[0]]);
    assert.ok(maxAbsDiff(P[n], tf.transpose(P[n])) < 1e-5);
  }
  const twice = Object.fromEntries(inner.map((n) => [n, tf.mul(P[n], 2) as tf.Tensor2D]));
  extendEditor(e, { keyPrecond: 1 }, P);
  const keys = transformFactors(e, f);
  for (const n of inner) {
    const stats = Object.values(e.nets).find((net) => net.modes.includes(n))!.stats;
    const want = tf.tidy(() => tf.matMul(tf.sub(f.u[n], stats.u.mean), P[n]));
    assert.ok(maxAbsDiff(keys[n].uTilde, want) < 1e-3 * Math.max(1, tf.tidy(() => tf.max(tf.abs(want)).dataSync()[0])), n);
    want.dispose();
  }
  // saved and loaded: the same P and the same edit
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "editor-precond-"));
  saveEditor(dir, e, m.config, m.params);
  const back = loadEditor(dir, m.config, m.params);
  for (const n of inner) assert.equal(maxAbsDiff(extensionsOf(back)!.precond![n], P[n]), 0);
  const req = [{ prompt: "The capital of Peru is", target: "Madrid" }];
  const r1 = appliedEdit(m, mendEdit(m, e, req));
  const r2 = appliedEdit(m, mendEdit(m, back, req));
  for (const n of inner) assert.ok(maxAbsDiff(r1.params[n], r2.params[n]) < 1e-6);
  // the preconditioner is used: doubling P doubles the update
  const r0 = appliedEdit(m, mendEdit(m, e, req));
  extendEditor(back, { keyPrecond: 1 }, twice);
  const r3 = appliedEdit(m, mendEdit(m, back, req));
  for (const n of inner) {
    const [d0, d3] = tf.tidy(() => [tf.sub(r0.params[n], m.params[n]), tf.sub(r3.params[n], m.params[n])]);
    assert.ok(maxAbsDiff(tf.mul(d0, 2), d3) < 1e-6 * Math.max(1, tf.tidy(() => tf.max(tf.abs(d3)).dataSync()[0])), n);
    tf.dispose([d0, d3]);
  }
  // no tensor leaks over repeated edits
  assert.equal(await leaked(() => { for (let i = 0; i < 5; i++) disposeEdit(mendEdit(m, back, req)); }), 0);
  for (const r of [r0, r1, r2, r3]) r.dispose();
  const plain = createEditor(e.config, shapes, 0);
  assert.throws(() => extendEditor(plain, {}, twice), /preconditioners given without keyPrecond/);
  assert.throws(() => loadOfficialEditor(dir, m.config, m.params), /trained with additions to MEND \(keyPrecond\)/);
  disposeEditor(plain);
  tf.dispose(Object.values(keys).map((k) => [k.uTilde, k.deltaTilde]).flat());
  disposeFactors(f);
  disposeBatch(b);
  disposeEditor(e);
  disposeEditor(back);
  disposeParams(m.params);
});
