import test from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as os from "os";
import * as path from "path";
import { wantedWasmThreads } from "../dist/model/wasmThreads";

const DIST = path.join(__dirname, "..", "dist");

/**
 * A child process (threads are per process): pick the wasm backend, run a seeded GPT-2's
 * forward+backward and a large product, print the backend line and a hash of every output bit.
 * `breakThreads` makes the threaded loader fail (no temporary folder) to exercise the fallback.
 */
function child(threads: number, breakThreads = false): { line: string; hash: string; threadsLeft: number } {
  const script = `
    const fs = require("fs"), crypto = require("crypto");
    ${breakThreads ? `fs.mkdtempSync = () => { throw new Error("no temporary folder"); };` : ""}
    const tf = require("@tensorflow/tfjs");
    const { initBackend, describeBackend } = require(${JSON.stringify(path.join(DIST, "model", "backend"))});
    const { randomGpt2 } = require(${JSON.stringify(path.join(DIST, "model", "randomGpt2"))});
    const { gptForward } = require(${JSON.stringify(path.join(DIST, "model", "gpt"))});
    const { meanNll } = require(${JSON.stringify(path.join(DIST, "model", "loss"))});
    (async () => {
      const c = await initBackend("wasm");
      const { config, params } = randomGpt2({ shape: "tiny", seed: 3 });
      const ids = tf.randomUniform([4, 12], 0, config.vocab_size, "int32", 1);
      const names = Object.keys(params).filter((n) => n !== "wte.weight");
      const outs = tf.grads((...ws) => meanNll(gptForward(params, config, ids, { replace: Object.fromEntries(names.map((n, i) => [n, ws[i]])) }).logits, ids))(names.map((n) => params[n]));
      const a = tf.randomNormal([300, 200], 0, 1, "float32", 5), b = tf.randomNormal([200, 400], 0, 1, "float32", 6);
      outs.push(tf.matMul(a, b));
      const h = crypto.createHash("sha256");
      for (const t of outs) h.update(Buffer.from(t.dataSync().buffer));
      console.log(JSON.stringify({ line: describeBackend(c), threads: c.threads, hash: h.digest("hex") }));
    })();`;
  const r = spawnSync(process.execPath, ["-e", script], { env: { ...process.env, MEND_WASM_THREADS: String(threads) }, encoding: "utf8", timeout: 120_000, cwd: path.join(__dirname, "..") });
  assert.equal(r.status, 0, `child (threads ${threads}) failed or did not exit by itself: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split("\n").pop() as string);
  return { line: out.line, hash: out.hash, threadsLeft: out.threads };
}

test("MEND_WASM_THREADS: default one thread, integers 1-8, anything else is a clear error", () => {
  assert.equal(wantedWasmThreads({}), 1);
  assert.equal(wantedWasmThreads({ MEND_WASM_THREADS: "2" }), 2);
  assert.throws(() => wantedWasmThreads({ MEND_WASM_THREADS: "two" }), /MEND_WASM_THREADS="two" must be an integer from 1 to 8/);
  assert.throws(() => wantedWasmThreads({ MEND_WASM_THREADS: "0" }), /from 1 to 8/);
  assert.throws(() => wantedWasmThreads({ MEND_WASM_THREADS: "9" }), /from 1 to 8/);
});

test("threaded wasm: two threads, the single-thread build's results bit for bit, and the process exits by itself", { skip: os.cpus().length < 2 && "needs two cores" }, () => {
  const one = child(1);
  const two = child(2);
  assert.match(one.line, /^wasm, 1 thread /);
  assert.match(two.line, /^wasm, 2 threads /);
  assert.equal(two.threadsLeft, 2);
  assert.equal(two.hash, one.hash);
});

test("threaded wasm falls back to one thread and says why when its loader fails", () => {
  const r = child(2, true);
  assert.match(r.line, /^wasm, 1 thread \(threaded build failed: .*no temporary folder/);
  assert.equal(r.threadsLeft, 1);
  assert.equal(r.hash, child(1).hash);
});
