import test from "node:test";
import { withKeys } from "../dist/extensions/editorExtensions";
import { preconditionedKeys } from "../dist/extensions/keyPrecond";
import { preservedEdit } from "../dist/extensions/preserve";
import { calibration, calibrationOf } from "../dist/extensions/calibrate";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { buildPreservationSet, disposePreservationSet, firstTargetArgmax, PreservationSet } from "../dist/extensions/preserve";
import { lastPositionInputs } from "../dist/model/layerInputs";
import { captureEditorFactors, disposeEdit, EditResult, mendEdit, transformFactors } from "../dist/mend/edit";
import { disposeEditor, editorVariables } from "../dist/mend/editor";
import { disposeFactors } from "../dist/mend/factor";
import { Transformed, pseudoGradient } from "../dist/mend/update";
import { disposeParams, gptForward } from "../dist/model/gpt";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { getWorld, leaked, maxAbsDiff, setup, tinyModel, updateDiff, warmEditor } from "./helpers";

test("lastPositionInputs: the inputs at each prompt's last position and the argmax there, batched or not", async () => {
  await setup();
  const m = tinyModel(3);
  const names = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"];
  const prompts = getWorld().editRecords("train").slice(0, 5).map((r) => r.prompts[0]);
  const all = lastPositionInputs(m, names, prompts);
  const two = lastPositionInputs(m, names, prompts, 2); // three chunks
  for (const n of names) {
    assert.deepEqual(all.inputs[n].shape, [5, m.params[n].shape[0]]);
    assert.ok(maxAbsDiff(all.inputs[n], two.inputs[n]) < 1e-5, n);
  }
  assert.deepEqual(Array.from(all.answers), Array.from(two.answers));
  // the argmax after a prompt is the first-target argmax of the same prompt with any target
  const b = makeBatch(m.tokenizer, prompts.map((p) => ({ prompt: p, target: "the" })), "target", m.config.n_positions);
  const logits = tf.tidy(() => gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask }).logits);
  assert.deepEqual(firstTargetArgmax(logits, b.labels.arraySync() as number[][]), Array.from(all.answers));
  tf.dispose([logits, ...Object.values(all.inputs), ...Object.values(two.inputs)]);
  disposeBatch(b);
  assert.throws(() => lastPositionInputs(m, ["h.9.mlp.c_fc.weight"], prompts), /not a 2-D weight/);
  assert.throws(() => lastPositionInputs(m, names, []), /no prompts/);
  disposeParams(m.params);
});

test("preserved keys: the update stops moving preserved inputs as β grows and keeps its response on the edit's own answer input", async () => {
  await setup();
  const m = tinyModel(21, { n_embd: 32 }); // d_in 32 and 128: more than the 10 preserved inputs + the edit's own
  const e = warmEditor(m, 4);
  const inner = e.config.innerParams;
  // the editor's output layer is 0 at identity init: give it weights so ũ is not u's normalisation alone
  const { net } = editorVariables(e);
  for (const [k, v] of Object.entries(net)) if (k.endsWith(".U")) v.assign(tf.tidy(() => tf.mul(0.05, tf.randomNormal(v.shape, 0, 1, "float32", 7))));
  const rec = getWorld().editRecords("train")[0];
  const b = makeBatch(m.tokenizer, [{ prompt: rec.prompts[0], target: rec.target_new }], "target", m.config.n_positions);
  const f = captureEditorFactors(m.params, m.config, b, e);
  const own = lastPositionInputs(m, inner, [rec.prompts[0]]).inputs; // the edit's answer-position input
  // In a random model all last-position inputs are nearly parallel (the edit's own too), which leaves
  // no update that moves one and not the others: the preserved inputs are random directions.
  const kept = Object.fromEntries(inner.map((n, i) => [n, tf.tidy(() => tf.mul(tf.randomNormal([10, own[n].shape[1]], 0, 1, "float32", 11 + i), tf.div(tf.norm(own[n]), Math.sqrt(own[n].shape[1]))) as tf.Tensor2D)]));
  const responses = (t: Transformed, x: Record<string, tf.Tensor2D>) =>
    inner.map((n) => tf.tidy(() => tf.norm(tf.matMul(x[n], pseudoGradient(t[n].uTilde, t[n].deltaTilde))).dataSync()[0])); // ‖x ∇̃W‖ per layer
  const free = (t: Transformed) => tf.dispose(Object.values(t).flatMap((x) => [x.uTilde, x.deltaTilde]));

  const plain = transformFactors(e, f);
  const p0 = responses(plain, kept);
  const o0 = responses(plain, own);
  let last = p0;
  for (const beta of [1, 100, 1e4]) {
    const t = transformFactors(withKeys(e, preconditionedKeys({ preserved: { inputs: kept, beta } })), f);
    const p = responses(t, kept);
    p.forEach((x, i) => assert.ok(x < last[i], `β ${beta}, ${inner[i]}: response on preserved inputs ${x} should fall below ${last[i]}`));
    if (beta === 1e4) {
      p.forEach((x, i) => assert.ok(x < 0.02 * p0[i], `β ${beta}, ${inner[i]}: ${x} should vanish (plain: ${p0[i]})`));
      responses(t, own).forEach((x, i) => assert.ok(Math.abs(x - o0[i]) < 0.02 * o0[i], `${inner[i]}: own response ${x} vs ${o0[i]}`));
    }
    last = p;
    free(t);
  }
  const none = transformFactors(withKeys(e, preconditionedKeys({ preserved: { inputs: Object.fromEntries(inner.map((n) => [n, tf.zeros([0, own[n].shape[1]]) as tf.Tensor2D])), beta: 10 } })), f);
  for (const n of inner) assert.ok(maxAbsDiff(none[n].uTilde, plain[n].uTilde) < 1e-6, `no preserved inputs: ${n} unchanged`);
  [plain, none].forEach(free);
  tf.dispose([...Object.values(own), ...Object.values(kept)]);
  disposeFactors(f);
  disposeBatch(b);
  disposeEditor(e);
  disposeParams(m.params);
});

test("mendEdit with preservation: the preserved update when its step is within maxStep, else the plain calibrated edit; clear errors; no leaks", async () => {
  await setup();
  const m = tinyModel(72);
  const e = warmEditor(m);
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(-0.01)); // the tiny model's edit is right within 4α (calibrate.test.ts)
  const inner = e.config.innerParams;
  const req = { prompt: "The president of the United States is", target: "Biden" };
  const prompts = getWorld().editRecords("train").slice(0, 12).map((r) => r.prompts[0]);
  const measured = buildPreservationSet(m, inner, prompts);
  const b = makeBatch(m.tokenizer, [req], "target", m.config.n_positions);
  const logits = tf.tidy(() => gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask }).logits);
  const old = firstTargetArgmax(logits, b.labels.arraySync() as number[][])[0];
  logits.dispose();
  disposeBatch(b);
  const matching: PreservationSet = { ...measured, answers: new Int32Array(prompts.length).fill(old) }; // all preserved
  const unmatched: PreservationSet = { ...measured, answers: new Int32Array(prompts.length).fill(old === 0 ? 1 : 0) }; // none preserved
  const cal = { margin: 1.2, maxScale: 4 };
  const plain = mendEdit(m, e, [req], { stepScale: calibration(cal) });
  assert.deepEqual(calibrationOf(plain.info)!.found, [true]);
  const same = (r: EditResult, what: string) => inner.forEach((n) => assert.ok(updateDiff(r, plain, n) < 1e-6, `${what}: ${n}`));

  const fallback = preservedEdit(m, e, [req], { set: matching, beta: 10, margin: 1.2, maxStep: 1e-3 }, cal);
  assert.equal(fallback.preserved, false, "no right step up to maxStep: the plain edit");
  same(fallback, "fallback");
  const nothingKept = preservedEdit(m, e, [req], { set: unmatched, beta: 10, margin: 1.2, maxStep: 4.8 }, cal);
  assert.equal(nothingKept.preserved, true);
  same(nothingKept, "no preserved prompt gives the old answer");
  const kept = preservedEdit(m, e, [req], { set: matching, beta: 10, margin: 1.2, maxStep: 100 }, cal);
  assert.equal(kept.preserved, true, "a right step exists for the preserved update");
  assert.ok(inner.some((n) => updateDiff(kept, plain, n) > 1e-5), "the preserved update differs from the plain one");
  const c = calibrationOf(kept.info)!;
  assert.ok(c.found[0] && Math.abs(c.scales[0] - 1.2 * c.thresholds[0]) < 1e-9 && c.scales[0] <= 100);
  [plain, fallback, nothingKept, kept].forEach(disposeEdit);

  const p = { set: matching, beta: 10, margin: 1.2, maxStep: 2 };
  assert.throws(() => preservedEdit(m, e, [req], { ...p, beta: 0 }, cal), /β must be a finite number > 0/);
  assert.throws(() => preservedEdit(m, e, [req], { ...p, maxStep: -1 }, cal), /margin and maxStep must be > 0/);
  assert.throws(() => preservedEdit(m, e, [req], { ...p, set: { ...matching, inputs: { [inner[0]]: matching.inputs[inner[0]] } } }, cal), /has no inputs of "h\.\d\.mlp/);
  assert.equal(await leaked(() => {
    for (const maxStep of [1e-3, 100]) for (let i = 0; i < 3; i++) disposeEdit(preservedEdit(m, e, [req], { ...p, maxStep }, cal));
  }), 0);
  disposePreservationSet(measured);
  disposeEditor(e);
  disposeParams(m.params);
});

