/**
 * src/web/settledReads.ts without a browser: a fake GPU backend whose synchronous reads are broken
 * (tensors live as "buffers" only its asynchronous read returns). A step whose later reads depend on
 * earlier ones settles with every read's true value, in one pass more than its chain of reads; the
 * passes not kept are freed; a step's own error comes through once its reads are settled, while an
 * error that placeholder zeros caused does not; results that differ from run to run are an error;
 * a synchronous read outside a step is an error rather than zeros.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { GpuBackend, settledReads } from "../dist/web/settledReads";

/** Buffers by dataId; `write` makes a "GPU tensor", `readSync` is what tfjs would call. */
function fakeGpu(): GpuBackend & { write(v: number[]): object } {
  const map = new Map<object, { dtype: "float32"; shape: number[]; values: null; resource: Float32Array }>();
  return {
    tensorMap: map,
    readSync: () => new Float32Array(0), // replaced by settledReads; never reached for GPU tensors
    getBufferData: async (buf) => (buf as Float32Array).slice().buffer,
    write(v: number[]) {
      const id = {};
      map.set(id, { dtype: "float32", shape: [v.length], values: null, resource: Float32Array.from(v) });
      return id;
    },
  };
}

test("settled reads: a chain of three dependent reads settles in four passes with true values; discarded passes are freed", async () => {
  const gpu = fakeGpu();
  const reads = settledReads(12, gpu);
  const discarded: number[] = [];
  let runs = 0;
  const got = await reads(
    () => {
      runs++;
      const a = gpu.readSync(gpu.write([2, 3]))[0] as number; // 2
      const b = gpu.readSync(gpu.write([a * 10]))[0] as number; // 20: depends on a
      const c = gpu.readSync(gpu.write([b + 1]))[0] as number; // 21: depends on b
      return { a, b, c, run: runs };
    },
    (r) => discarded.push(r.run),
  );
  assert.deepEqual({ a: got.a, b: got.b, c: got.c }, { a: 2, b: 20, c: 21 });
  assert.equal(reads.lastPasses, 4);
  assert.deepEqual(discarded, [1, 2, 3], "every pass but the kept one was freed");
});

test("settled reads: independent reads settle in two passes; a step without reads in one", async () => {
  const gpu = fakeGpu();
  const reads = settledReads(12, gpu);
  const got = await reads(() => [gpu.readSync(gpu.write([1.5]))[0], gpu.readSync(gpu.write([-0, NaN]))[1]], () => {});
  assert.equal(got[0], 1.5);
  assert.ok(Number.isNaN(got[1]), "NaN settles (bits compared, not values)");
  assert.equal(reads.lastPasses, 2);
  assert.equal(await reads(() => 7, () => {}), 7);
  assert.equal(reads.lastPasses, 1);
});

test("settled reads: an error the zeros caused is not reported; the step's own error is, once its reads settle", async () => {
  const gpu = fakeGpu();
  const reads = settledReads(12, gpu);
  const ok = await reads(() => {
    const x = gpu.readSync(gpu.write([4]))[0] as number;
    if (x === 0) throw new Error("a zero read");
    return x;
  }, () => {});
  assert.equal(ok, 4);
  await assert.rejects(
    reads(() => {
      const x = gpu.readSync(gpu.write([4]))[0] as number;
      throw new Error(`the step's own error after reading ${x}`);
    }, () => {}),
    /the step's own error after reading 4/,
  );
});

test("settled reads: results that differ from run to run, a read outside a step, a nested step", async () => {
  const gpu = fakeGpu();
  const reads = settledReads(5, gpu);
  let n = 0;
  await assert.rejects(reads(() => gpu.readSync(gpu.write([n++]))[0], () => {}), /did not settle in 5 passes/);
  assert.throws(() => gpu.readSync(gpu.write([1])), /a synchronous read of a GPU tensor outside a settled step/);
  await assert.rejects(reads(() => reads(() => 1, () => {}), () => {}), /a step started inside another step/);
});
