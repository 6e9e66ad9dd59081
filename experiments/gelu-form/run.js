/**
 * Does writing GPT-2's GELU through the sigmoid (x σ(2z), src/model/gpt.ts) instead of the tanh
 * (0.5 x (1 + tanh z)) change what the shipped checkpoints do? The same process evaluates the shipped
 * base model, MEND editor, KE and ENN on the facts world's test edits (single edits, k = 5 batches,
 * sequential edits: `mend eval`'s evaluation) once with each form, and measures the largest logit gap
 * of the base model over the whole pretraining corpus. Writes results.json beside this file.
 *
 *   npm run build && node experiments/gelu-form/run.js
 */
const fs = require("fs");
const path = require("path");
const { execSync } = require("child_process");
const tf = require("@tensorflow/tfjs");
const lib = require(path.join(__dirname, "..", "..", "dist"));
const ROOT = path.join(__dirname, "..", "..");

(async () => {
  const backend = await lib.model.initBackend();
  const model = lib.model.loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = lib.world.World.load();
  const editor = lib.mend.loadEditor(path.join(ROOT, "checkpoints", "editor"), model.config, model.params);
  const ke = lib.baselines.loadKe(path.join(ROOT, "checkpoints", "ke"), model);
  const enn = lib.baselines.loadEnn(path.join(ROOT, "checkpoints", "enn"), model);
  const names = ["MEND", "KE", "ENN", "FT"];
  const methods = lib.evaluation.buildMethods(names, { editor, ke, enn, ...lib.evaluation.worldMethodContext(world, model) });
  const records = world.editRecords("test");
  const cfg = { ...lib.evaluation.DEFAULT_EVAL_CONFIG, batchSizes: [5] };

  // base logits over the corpus, both forms
  const rows = world.corpus().map((c) => ({ prompt: c.prompt, target: c.object }));
  const logitsOf = (form) => {
    lib.model.useGeluForm(form);
    const out = [];
    for (let i = 0; i < rows.length; i += 64) {
      const b = lib.model.makeBatch(model.tokenizer, rows.slice(i, i + 64), "all", model.config.n_positions);
      out.push(tf.tidy(() => lib.model.gptForward(model.params, model.config, b.inputIds, { attentionMask: b.attentionMask }).logits.dataSync()));
      lib.model.disposeBatch(b);
    }
    return out;
  };
  const [a, b] = [logitsOf("sigmoid"), logitsOf("tanh")];
  let gap = 0, n = 0;
  a.forEach((x, i) => x.forEach((v, j) => ((gap = Math.max(gap, Math.abs(v - b[i][j]))), n++)));

  const evals = {};
  for (const form of ["sigmoid", "tanh"]) {
    lib.model.useGeluForm(form);
    const t0 = Date.now();
    evals[form] = lib.evaluation.evaluateMethods(model, world, methods, records, cfg, (s) => console.error(`[${form}] ${s}`));
    console.error(`[${form}] ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  lib.model.useGeluForm("sigmoid");
  // every number of the two evaluations, side by side (times excluded)
  const diffs = [];
  const walk = (x, y, at) => {
    if (typeof x === "number" && typeof y === "number") {
      if (!/(_ms|_sec|latency)/.test(at)) diffs.push({ at, sigmoid: x, tanh: y, gap: Math.abs(x - y) });
    } else if (x && typeof x === "object") for (const k of Object.keys(x)) walk(x[k], y?.[k], `${at}.${k}`);
  };
  walk(evals.sigmoid, evals.tanh, "eval");
  for (const d of diffs) d.relative = d.gap / Math.max(Math.abs(d.sigmoid), Math.abs(d.tanh), 1e-30);
  diffs.sort((p, q) => q.gap - p.gap);
  // per part of the evaluation (methods' summaries, drift, heatmap, batched, sequential): the largest gaps
  const parts = {};
  for (const d of diffs) {
    const part = d.at.split(".").slice(1, 3).join("."); // e.g. methods.MEND, sequential.MEND
    const p = (parts[part] ??= { numbers: 0, differing: 0, max_abs_gap: 0, max_relative_gap: 0 });
    p.numbers++;
    if (d.gap > 0) p.differing++;
    p.max_abs_gap = Math.max(p.max_abs_gap, d.gap);
    p.max_relative_gap = Math.max(p.max_relative_gap, d.relative);
  }
  const out = {
    command: "node experiments/gelu-form/run.js",
    commit: execSync("git rev-parse --short HEAD", { cwd: ROOT, encoding: "utf8" }).trim(),
    date: new Date().toISOString().slice(0, 10),
    backend: backend.kind,
    base_logits: { values: n, max_abs_gap: gap },
    eval: { methods: names, n_test: records.length, numbers: diffs.length, differing: diffs.filter((d) => d.gap > 0).length, by_part: parts, largest: diffs.slice(0, 10) },
    summaries: Object.fromEntries(names.map((m) => [m, { sigmoid: evals.sigmoid.methods[m], tanh: evals.tanh.methods[m] }])),
  };
  console.log(`base logits: ${n} values, largest gap ${gap.toExponential(2)}`);
  console.log(`evaluation: ${diffs.length} numbers, ${out.eval.differing} differ`);
  for (const [part, p] of Object.entries(parts)) console.log(`  ${part.padEnd(28)} ${String(p.differing).padStart(5)} of ${String(p.numbers).padStart(5)} differ; largest gap ${p.max_abs_gap.toExponential(2)} (relative ${p.max_relative_gap.toExponential(2)})`);
  fs.writeFileSync(path.join(__dirname, "results.json"), JSON.stringify(out, null, 1) + "\n");
})();
