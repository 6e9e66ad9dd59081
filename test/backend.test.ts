import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { backendChoice, initBackend, useFastMatMulGradient } from "../dist/model/backend";
import { maxAbsDiff, setup } from "./helpers";

test("backend picker reports its choice and why others were skipped", async () => {
  await setup();
  const c = backendChoice()!;
  assert.ok(["wasm", "cpu", "node", "node-gpu"].includes(c.kind));
  assert.equal(tf.getBackend(), c.backend);
  await assert.rejects(initBackend("tpu"), /MEND_BACKEND="tpu" is not a backend/);
});

test("explicit-transpose matMul gradient equals tfjs' gradient for every transpose combination", async () => {
  await setup();
  const a2 = tf.randomNormal([5, 7], 0, 1, "float32", 1);
  const b2 = tf.randomNormal([7, 3], 0, 1, "float32", 2);
  const a3 = tf.randomNormal([2, 5, 7], 0, 1, "float32", 3);
  const b3 = tf.randomNormal([2, 7, 3], 0, 1, "float32", 4);
  const cases: [tf.Tensor, tf.Tensor, boolean, boolean][] = [
    [a2, b2, false, false],
    [a2, tf.transpose(b2), false, true],
    [tf.transpose(a2), b2, true, false],
    [tf.transpose(a2), tf.transpose(b2), true, true],
    [a3, b3, false, false],
    [a3, tf.transpose(b3, [0, 2, 1]), false, true],
  ];
  for (const [a, b, ta, tb] of cases) {
    const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.sin(tf.matMul(x, y, ta, tb)));
    const prev = useFastMatMulGradient(true);
    const fast = tf.grads(f)([a, b]);
    useFastMatMulGradient(false);
    const ref = tf.grads(f)([a, b]);
    useFastMatMulGradient(prev);
    assert.ok(maxAbsDiff(fast[0], ref[0]) < 1e-4, `dA ta=${ta} tb=${tb}`);
    assert.ok(maxAbsDiff(fast[1], ref[1]) < 1e-4, `dB ta=${ta} tb=${tb}`);
    tf.dispose([...fast, ...ref]);
  }
});
