import test from "node:test";
import { calibration, calibrationOf } from "../dist/extensions/calibrate";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { rightAtScales, smallestRightSteps } from "../dist/extensions/calibrate";
import { disposeEdit, mendEdit, transformFactors } from "../dist/mend/edit";
import { disposeEditor } from "../dist/mend/editor";
import { captureFactors, disposeFactors } from "../dist/mend/factor";
import { disposeParams } from "../dist/model/gpt";
import { scoreTargets } from "../dist/model/score";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { appliedEdit, leaked, maxAbsDiff, setup, tinyModel, warmEditor } from "./helpers";
import { ParamsModel } from "../dist/model/paramsModel";
import { updatedWeights } from "../dist/model/weightUpdate";

const req = { prompt: "The president of the United States is", target: "Biden" };

test("smallestRightSteps finds each request's first right step to ~3%, NaN when none", () => {
  // Request 0 is right from 0.37, request 1 only inside [0.9, 1.2] (not monotone), request 2 never.
  const right = (s: number, b: number) => (b === 0 ? s >= 0.37 : b === 1 ? s >= 0.9 && s <= 1.2 : false);
  let calls = 0;
  const steps = smallestRightSteps((scales) => (calls++, scales.map((row) => row.map((s, b) => right(s, b)))), 3, 2);
  assert.equal(calls, 3, "three batched rounds");
  assert.ok(steps[0] >= 0.37 && steps[0] <= 0.37 * 1.03, `request 0: ${steps[0]}`);
  assert.ok(steps[1] >= 0.9 && steps[1] <= 0.9 * 1.03, `request 1: ${steps[1]}`);
  assert.ok(Number.isNaN(steps[2]));
  // Right already at the smallest power: the bracket starts at 0 and is refined linearly.
  const [tiny] = smallestRightSteps((scales) => scales.map((row) => row.map((s) => s >= 0.01)), 1, 2);
  assert.ok(tiny >= 0.01 && tiny <= 0.03, `tiny: ${tiny}`);
});

test("rightAtScales (one batched forward, low-rank masks) agrees with forming W + s·ΔW per request", async () => {
  await setup();
  const m = tinyModel(72);
  const e = warmEditor(m);
  const reqs = [req, { prompt: "The capital of Peru is", target: "Santiago" }];
  const b = makeBatch(m.tokenizer, reqs, "target", m.config.n_positions);
  const f = captureFactors(m.params, m.config, b, e.config.innerParams, undefined, "structural");
  const T = f.seqLen;
  const big = -100; // α·big = -0.01: on this untrained editor the step that makes the tiny model's edit right
  const alpha = Object.fromEntries(e.config.innerParams.map((n) => [n, e.editLrs[n].dataSync()[0] * big]));
  const update = tf.tidy(() =>
    Object.fromEntries(Object.entries(transformFactors(e, f)).map(([n, t]) => [n, { alpha: alpha[n], keys: t.uTilde, values: t.deltaTilde, requests: f.rows[n].map((r) => Math.floor(r / T)) }])),
  );
  const scales = [[0, 0], [1, 0], [0, 1], [0.5, 2], [2, 0.5]];
  const fast = rightAtScales(m, update, b, scales);
  assert.ok(fast.flat().includes(true) && fast.flat().includes(false), `some right, some not: ${JSON.stringify(fast)}`);
  for (const [g, [s0, s1]] of scales.entries()) {
    const params = tf.tidy(() => {
      const out = { ...m.params };
      for (const [n, u] of Object.entries(update)) {
        const rowScale = tf.tensor2d(u.requests.map((r) => (r === 0 ? s0 : s1)), [u.requests.length, 1]);
        out[n] = tf.add(m.params[n], tf.matMul(tf.transpose(tf.mul(tf.mul(u.alpha, u.keys), rowScale)), u.values));
      }
      return out;
    });
    const slow = scoreTargets(new ParamsModel(m.config, params, m.tokenizer), reqs).map((x) => x.exact);
    assert.deepEqual(fast[g], slow, `scales ${s0}, ${s1}`);
    tf.dispose(e.config.innerParams.map((n) => params[n]));
  }
  // Independent calls (meta-training): each request sees only its own rows.
  const separate = rightAtScales(m, update, b, scales, undefined, [0, 1]);
  const alone0 = rightAtScales(m, update, b, scales.map(([s0]) => [s0, 0]));
  const alone1 = rightAtScales(m, update, b, scales.map(([, s1]) => [0, s1]));
  assert.deepEqual(separate, scales.map((_, g) => [alone0[g][0], alone1[g][1]]));
  tf.dispose(Object.values(update).flatMap((u) => [u.keys, u.values]));
  disposeFactors(f);
  disposeBatch(b);
  disposeEditor(e);
  disposeParams(m.params);
});

test("a calibrated edit is margin x the smallest right step times the official update, and is right", async () => {
  await setup();
  const m = tinyModel(72);
  const e = warmEditor(m);
  // The official code adds α∇̃W, so training makes α negative; -0.01 makes the tiny model's edit right.
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(-0.01));
  const official = appliedEdit(m, mendEdit(m, e, [req]));
  const cal = appliedEdit(m, mendEdit(m, e, [req], { stepScale: calibration({ margin: 1.2, maxScale: 4 }) }));
  const calEdit = mendEdit(m, e, [req], { stepScale: calibration({ margin: 1.2, maxScale: 4 }) });
  const c = calibrationOf(calEdit.info)!;
  disposeEdit(calEdit);
  assert.deepEqual(c.found, [true], "a right step exists up to 4x alpha");
  assert.ok(Math.abs(c.scales[0] - 1.2 * c.thresholds[0]) < 1e-9);
  for (const n of e.config.innerParams) {
    const diff = tf.tidy(() => maxAbsDiff(tf.sub(cal.params[n], m.params[n]), tf.mul(c.scales[0], tf.sub(official.params[n], m.params[n]))));
    assert.ok(diff < 1e-5, `${n}: ${diff}`);
  }
  assert.ok(scoreTargets(cal, [req])[0].exact, "the calibrated edit makes the target the argmax");
  const just = appliedEdit(m, mendEdit(m, e, [req], { lrScale: c.thresholds[0] * 0.9 }));
  assert.ok(!scoreTargets(just, [req])[0].exact, "10% below the found step it is not yet right");
  [official, cal, just].forEach((x) => x.dispose());
  disposeEditor(e);
  disposeParams(m.params);
});

test("calibrated edits: unreachable requests keep the official step; bad settings are clear errors; no tensor leak", async () => {
  await setup();
  const m = tinyModel(73);
  const e = warmEditor(m); // α = 1e-4: the tiny model's argmax does not move within 2x alpha
  const r = mendEdit(m, e, [req, { prompt: "The capital of Peru is", target: "Santiago" }], { stepScale: calibration({ margin: 1.3, maxScale: 2 }) });
  assert.deepEqual(calibrationOf(r.info)!.found, [false, false]);
  assert.deepEqual(calibrationOf(r.info)!.scales, [1, 1]);
  const official = mendEdit(m, e, [req, { prompt: "The capital of Peru is", target: "Santiago" }]);
  const [wr, wo] = [updatedWeights(m.params, [r.update]), updatedWeights(m.params, [official.update])];
  for (const n of e.config.innerParams) assert.ok(maxAbsDiff(wr[n], wo[n]) < 1e-6);
  tf.dispose([...Object.values(wr), ...Object.values(wo)]);
  disposeEdit(r);
  disposeEdit(official);
  assert.throws(() => mendEdit(m, e, [req], { stepScale: calibration({ margin: 0, maxScale: 2 }) }), /margin must be a positive number/);
  assert.throws(() => mendEdit(m, e, [req], { stepScale: calibration({ margin: 1.3, maxScale: NaN }) }), /maxScale must be a positive number/);
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(-0.01));
  const grew = await leaked(() => {
    for (let i = 0; i < 20; i++) disposeEdit(mendEdit(m, e, [req], { stepScale: calibration({ margin: 1.3, maxScale: 4 }) }));
  });
  assert.equal(grew, 0);
  disposeEditor(e);
  disposeParams(m.params);
});
