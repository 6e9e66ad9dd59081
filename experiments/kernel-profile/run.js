/**
 * Where the facts-world model's time goes, by kernel: tf.profile over the loss of `mend bench`'s batch
 * (the first 64 corpus sentences), its gradients with respect to every parameter, and `mend bench`'s
 * MEND edit (the Biden edit with the shipped editor, applied to the model: what `mend bench` times),
 * kernels grouped by name with their count and summed kernel time, largest first. Writes
 * results.json beside this file. Kernel times are only comparable within one run on an idle machine.
 *
 *   npm run build && node experiments/kernel-profile/run.js [--reps 5]
 */
const fs = require("fs");
const path = require("path");
const { execSync } = require("child_process");
const tf = require("@tensorflow/tfjs");
const lib = require(path.join(__dirname, "..", "..", "dist"));
const { gptForward } = require(path.join(__dirname, "..", "..", "dist", "model", "gpt"));
const { meanNll } = require(path.join(__dirname, "..", "..", "dist", "model", "loss"));

const argv = process.argv.slice(2);
const reps = Number(argv.includes("--reps") ? argv[argv.indexOf("--reps") + 1] : 5);

/** Kernels of `fn` (run `reps` times after one warm-up; `fn` frees what it makes) grouped by name: count and ms per run. */
async function byKernel(fn) {
  for (let w = 0; w < 3; w++) tf.dispose(tf.tidy(fn)); // warm-up: first calls fill caches
  const tensors = tf.memory().numTensors;
  const groups = new Map();
  let wall = 0;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const p = await tf.profile(() => tf.tidy(fn));
    wall += performance.now() - t0;
    tf.dispose(p.result);
    for (const k of p.kernels) {
      const g = groups.get(k.name) ?? { kernel: k.name, count: 0, ms: 0 };
      g.count += 1 / reps;
      g.ms += (typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0) / reps;
      groups.set(k.name, g);
    }
  }
  if (tf.memory().numTensors !== tensors) throw new Error(`the profiled function left ${tf.memory().numTensors - tensors} tensors behind`);
  const rows = [...groups.values()].sort((a, b) => b.ms - a.ms).map((g) => ({ kernel: g.kernel, count: Math.round(g.count), ms: +g.ms.toFixed(3) }));
  return { kernels: rows.reduce((n, g) => n + g.count, 0), kernel_ms: +rows.reduce((n, g) => n + g.ms, 0).toFixed(2), profiled_wall_ms: +(wall / reps).toFixed(1), rows };
}

(async () => {
  const backend = await lib.model.initBackend();
  const model = lib.model.loadModel(path.join(__dirname, "..", "..", "checkpoints", "base"));
  const world = lib.world.World.load();
  // the batch `mend bench` times: the first 64 corpus sentences, loss on every token
  const rows = world.corpus().slice(0, 64).map((c) => ({ prompt: c.prompt, target: c.object }));
  const batch = lib.model.makeBatch(model.tokenizer, rows, "all", model.config.n_positions);
  const names = Object.keys(model.params);
  lib.model.useFastMatMulGradient(true); // the project's matMul gradient, as `mend bench` times it
  const forward = () => meanNll(gptForward(model.params, model.config, batch.inputIds, { attentionMask: batch.attentionMask }).logits, batch.labels);
  const vars = Object.fromEntries(names.map((n) => [n, tf.variable(model.params[n])]));
  const grads = () => Object.values(tf.variableGrads(() => meanNll(gptForward(vars, model.config, batch.inputIds, { attentionMask: batch.attentionMask }).logits, batch.labels)).grads);
  const out = { command: "node experiments/kernel-profile/run.js", commit: execSync("git rev-parse --short HEAD", { cwd: __dirname, encoding: "utf8" }).trim(), date: new Date().toISOString().slice(0, 10), backend: backend.kind, batch: batch.inputIds.shape, reps };
  const editor = lib.mend.loadEditor(path.join(__dirname, "..", "..", "checkpoints", "editor"), model.config, model.params);
  const request = { prompt: "The president of the United States is", target: "Biden" };
  const edit = () => {
    const { update } = lib.mend.mendEdit(model, editor, [request]);
    const edited = lib.model.applyUpdates(model, [update]);
    edited.dispose();
    lib.model.disposeUpdate(update);
  };
  out.forward = await byKernel(forward);
  out.forward_backward = await byKernel(grads);
  out.edit = await byKernel(edit);
  for (const what of ["forward", "forward_backward", "edit"]) {
    const r = out[what];
    console.log(`${what}: ${r.kernels} kernels, ${r.kernel_ms} ms in kernels, ${r.profiled_wall_ms} ms wall (profiled)`);
    for (const g of r.rows.slice(0, 12)) console.log(`  ${g.kernel.padEnd(24)} ${String(g.count).padStart(4)}  ${g.ms.toFixed(2).padStart(8)} ms`);
  }
  fs.writeFileSync(path.join(__dirname, "results.json"), JSON.stringify(out, null, 1) + "\n");
})();
