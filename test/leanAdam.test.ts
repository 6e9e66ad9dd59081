/** LeanAdam: tfjs' Adam op for op (same values, same saved state), with each variable's temporaries freed before the next. */
import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { leanAdam } from "../dist/model/leanAdam";
import { leaked, maxAbsDiff, setup } from "./helpers";

test("LeanAdam equals tfjs' Adam bit for bit, saves the same state, and peaks at one variable's temporaries", async () => {
  await setup();
  const shapes = [[64, 96], [96, 64], [64], [32, 32], [1]];
  const make = () => shapes.map((s, i) => tf.variable(tf.randomNormal(s, 0, 1, "float32", i + 1)));
  const [a, b] = [make(), make()];
  const [ref, lean] = [tf.train.adam(1e-2, 0.9, 0.999, 1e-8), leanAdam(1e-2, 0.9, 0.999, 1e-8)];
  const peaks: number[][] = [[], []];
  for (let step = 0; step < 4; step++) {
    const grads = shapes.map((s, i) => tf.randomNormal(s, 0, 1, "float32", 100 * step + i + 1));
    for (const [k, [opt, vs]] of ([[ref, a], [lean, b]] as const).entries()) {
      const before = tf.memory().numBytes;
      const info = await tf.profile(() => opt.applyGradients(vs.map((v, i) => ({ name: v.name, tensor: grads[i] }))));
      if (step > 0) peaks[k].push(info.peakBytes - before); // after the first step's moment slots exist
    }
    tf.dispose(grads);
  }
  a.forEach((v, i) => assert.equal(maxAbsDiff(v, b[i]), 0, `variable ${i}`));
  const [wa, wb] = [await ref.getWeights(), await lean.getWeights()];
  assert.equal(wa.length, wb.length);
  wa.forEach((w, i) => assert.equal(maxAbsDiff(w.tensor, wb[i].tensor), 0, w.name));
  const total = shapes.reduce((s, x) => s + 4 * x.reduce((p, d) => p * d, 1), 0);
  assert.ok(Math.max(...peaks[0]) >= 3 * total, `tfjs' Adam holds every variable's temporaries: ${Math.max(...peaks[0])} bytes for ${total}`);
  assert.ok(Math.max(...peaks[1]) < Math.max(...peaks[0]) / 2, `LeanAdam peaks at ${Math.max(...peaks[1])} bytes, tfjs at ${Math.max(...peaks[0])}`);
  assert.equal(await leaked(() => lean.applyGradients(b.map((v) => ({ name: v.name, tensor: tf.zerosLike(v) })))), shapes.length, "only the zero gradients it was given");
  tf.dispose([...a, ...b]);
  ref.dispose();
  lean.dispose();
});
