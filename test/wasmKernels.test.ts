import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useWasmKernels, wasmKernelsActive } from "../dist/model/wasmKernels";
import { Rng } from "../dist/model/rng";
import { setup } from "./helpers";

const onWasm = async () => {
  await setup();
  return tf.getBackend() === "wasm";
};

/** `f`'s outputs with the library's kernels and with ours, as flat arrays. */
function both(f: () => tf.Tensor | tf.Tensor[]): [number[][], number[][]] {
  const run = () => tf.tidy(() => [f()].flat().map((t) => Array.from(t.dataSync())));
  const prev = useWasmKernels(false);
  try {
    const lib = run();
    useWasmKernels(true);
    return [lib, run()];
  } finally {
    useWasmKernels(prev);
  }
}

test("copy-free Slice and SplitV give the library's results bit for bit, on every rank and dtype", async (t) => {
  if (!(await onWasm())) return t.skip("wasm only");
  assert.equal(wasmKernelsActive(), true, "initBackend installs them on wasm");
  const rng = new Rng(7);
  const int = (n: number) => rng.int(n);
  let cases = 0;
  for (let rank = 1; rank <= 5; rank++) {
    for (let c = 0; c < 12; c++) {
      const shape = Array.from({ length: rank }, () => 1 + int(5));
      const begin = shape.map((d) => int(d));
      const size = shape.map((d, i) => (c % 3 === 0 ? d - begin[i] : 1 + int(d - begin[i]))); // every third reaches the end of each axis
      for (const dtype of ["float32", "int32"] as const) {
        const x = tf.tidy(() => tf.cast(tf.mul(tf.randomUniform(shape, -50, 50, "float32", c + 13 * rank), dtype === "int32" ? 1 : 1.37), dtype));
        const [lib, ours] = both(() => tf.slice(x, begin, size));
        assert.deepEqual(ours, lib, `slice of [${shape}] at [${begin}] size [${size}] (${dtype})`);
        const axis = int(rank);
        const pieces = shape[axis] >= 2 ? [1, shape[axis] - 1] : 1;
        const [libS, oursS] = both(() => tf.split(x, pieces, axis));
        assert.deepEqual(oursS, libS, `split of [${shape}] on axis ${axis} (${dtype})`);
        x.dispose();
        cases++;
      }
    }
  }
  assert.equal(cases, 120);
  // empty slices and GPT-2's fused q, k, v
  const qkv = tf.randomNormal([6, 12]);
  assert.deepEqual(...both(() => tf.split(qkv, 3, 1)));
  assert.deepEqual(...both(() => tf.slice(qkv, [2, 0], [0, 12])));
  qkv.dispose();
});

test("Transpose and Sum over outer axes give the library's results bit for bit, on every rank and dtype", async (t) => {
  if (!(await onWasm())) return t.skip("wasm only");
  const rng = new Rng(11);
  const permutation = (n: number) => {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  };
  let swapped = 0;
  for (let rank = 2; rank <= 5; rank++) {
    for (let c = 0; c < 12; c++) {
      const shape = Array.from({ length: rank }, () => 1 + rng.int(c % 4 === 0 ? 40 : 6)); // some tiles cut at the edge
      const perm = c % 2 ? permutation(rank) : [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
      if (c % 2 === 0) swapped++;
      for (const dtype of ["float32", "int32"] as const) {
        const x = tf.tidy(() => tf.cast(tf.mul(tf.randomUniform(shape, -50, 50, "float32", c + 17 * rank), 1.37), dtype));
        assert.deepEqual(...both(() => tf.transpose(x, perm)), `transpose of [${shape}] by [${perm}] (${dtype})`);
        const axes = [...new Set([rng.int(rank), rng.int(rank)])];
        for (const keepDims of [false, true]) {
          const [lib, ours] = both(() => tf.sum(x, axes, keepDims));
          assert.deepEqual(ours, lib, `sum of [${shape}] over [${axes}] (${dtype})`);
          const shapes = [false, true].map((on) => {
            const prev = useWasmKernels(on);
            try {
              return tf.tidy(() => tf.sum(x, axes, keepDims).shape);
            } finally {
              useWasmKernels(prev);
            }
          });
          assert.deepEqual(shapes[1], shapes[0]);
        }
        x.dispose();
      }
    }
  }
  assert.ok(swapped >= 24);
  // the shapes the model transposes: a weight, a batch of attention scores, a bias gradient
  const w = tf.randomNormal([128, 512]);
  const att = tf.randomNormal([64, 4, 14, 14]);
  assert.deepEqual(...both(() => tf.transpose(w)));
  assert.deepEqual(...both(() => tf.transpose(att, [0, 1, 3, 2])));
  assert.deepEqual(...both(() => tf.sum(w, 0)));
  tf.dispose([w, att]);
});

test("Identity and same-dtype Cast share their input's data, and the input can be freed first", async (t) => {
  if (!(await onWasm())) return t.skip("wasm only");
  const before = tf.memory();
  const x = tf.tensor1d([1.5, -2, 3]);
  const y = tf.clone(x); // Identity
  const z = tf.cast(x, "float32");
  const w = tf.cast(x, "int32"); // another dtype: converted, not shared
  assert.equal(y.dataId, x.dataId);
  assert.equal(z.dataId, x.dataId);
  assert.equal(tf.memory().numDataBuffers - before.numDataBuffers, 2, "x's and w's: the clone and the same-dtype cast hold no data of their own");
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), [1.5, -2, 3]);
  assert.deepEqual(Array.from(z.dataSync()), [1.5, -2, 3]);
  assert.deepEqual(Array.from(w.dataSync()), [1, -2, 3]);
  tf.dispose([y, z, w]);
  assert.equal(tf.memory().numBytes, before.numBytes);
  assert.equal(tf.memory().numTensors, before.numTensors);
});

test("the library's kernels come back when asked, and ours again after", async (t) => {
  if (!(await onWasm())) return t.skip("wasm only");
  const ours = tf.getKernel("Slice", "wasm")!.kernelFunc;
  assert.equal(useWasmKernels(false), true);
  const lib = tf.getKernel("Slice", "wasm")!.kernelFunc;
  assert.notEqual(lib, ours);
  const x = tf.tensor1d([1, 2, 3]);
  const y = tf.clone(x);
  assert.notEqual(y.dataId, x.dataId, "the library's Identity copies");
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3]);
  y.dispose();
  assert.equal(useWasmKernels(true), false);
  assert.notEqual(tf.getKernel("Slice", "wasm")!.kernelFunc, lib);
  assert.equal(wasmKernelsActive(), true);
});
