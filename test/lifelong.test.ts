/** The lifelong methods, the lifelong benchmark, and replaying an edit ledger. */
import test from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import * as tf from "@tensorflow/tfjs";
import { buildMethods, disposeMethodEdit, EditMethod } from "../dist/eval/methods";
import { runLifelong, worldStream } from "../dist/eval/lifelong";
import { lifelongTargets, LifelongResult } from "../dist/eval/lifelongReport";
import { replayWithout } from "../dist/eval/ledgerOps";
import { checkLedgerStates, cholesky, locFtBfEdit, choleskySolve, nullSpaceProjector, preservedCovarianceInverse, preservedKeys, solveSpd, stateCarriedPast, weightState } from "../dist/lifelong";
import { EditLedger, readLedger, saveLedgerModel } from "../dist/model/editLedger";
import { disposeParams } from "../dist/model/gpt";
import { loadModel, Model } from "../dist/model/modelFolder";
import { ParamsModel, replaceModel } from "../dist/model/paramsModel";
import { scoreTargets } from "../dist/model/score";
import { isLowRank } from "../dist/model/weightUpdate";
import { EditedModel } from "../dist/model/languageModel";
import { ROOT, getWorld, maxAbsDiff, setup } from "./helpers";

const BASE = path.join(ROOT, "checkpoints", "base");
const WEIGHT = "h.3.mlp.c_proj.weight";
const reqs = [
  { prompt: "The capital of France is", target: "Rome" },
  { prompt: "The president of the United States is", target: "Biden" },
  { prompt: "The currency of Japan is the", target: "euro" },
];

function lifelongMethods(model: Model, names: string[], preserve = worldStream(getWorld(), 10, 0).preserve): EditMethod[] {
  return buildMethods(names, { innerParams: [WEIGHT], locTexts: preserve.slice(0, 16), lifelong: { model, preserve } });
}

test("float64 Cholesky solves a symmetric positive definite system and names a matrix that is not", () => {
  const a = Float64Array.from([4, 2, 0.4, 2, 5, 1, 0.4, 1, 3]);
  const x = Float64Array.from([1, -2, 0.5, 3, 0.25, -1]); // 3 x 2
  const b = new Float64Array(6);
  for (let i = 0; i < 3; i++) for (let c = 0; c < 2; c++) for (let k = 0; k < 3; k++) b[i * 2 + c] += a[i * 3 + k] * x[k * 2 + c];
  const got = choleskySolve(cholesky(a, 3), 3, b, 2);
  got.forEach((v, i) => assert.ok(Math.abs(v - x[i]) < 1e-12, `x[${i}] = ${v}, expected ${x[i]}`));
  assert.throws(() => solveSpd(Float64Array.from([1, 2, 2, 1]), 2, Float64Array.from([1, 1]), 1, "the test matrix"), /the test matrix is not positive definite \(pivot 1/);
});

test("AlphaEdit's starting A⁻¹ inverts λ(I + μ P C₀ P / s), by Woodbury with fewer keys than dimensions and directly with more", () => {
  const d = 48;
  const p = nullSpaceProjector(tf.randomNormal([12, d], 0, 1, "float32", 1) as tf.Tensor2D);
  for (const m of [20, 80]) {
    const k0 = tf.randomNormal([m, d], 0, 1, "float32", 2) as tf.Tensor2D;
    const inv = preservedCovarianceInverse(k0, p, 0.5, 100);
    const err = tf.tidy(() => {
      const c = tf.div(tf.matMul(tf.transpose(k0), k0), m);
      const s = tf.div(tf.sum(tf.mul(c, tf.eye(d))), d);
      const a = tf.mul(0.5, tf.add(tf.eye(d), tf.mul(tf.div(tf.matMul(tf.matMul(p, c), p), s), 100)));
      return tf.max(tf.abs(tf.sub(tf.matMul(a, inv), tf.eye(d)))).dataSync()[0];
    });
    assert.ok(err < 1e-3, `m = ${m}: max |A₀ A₀⁻¹ − I| = ${err}`);
    tf.dispose([k0, inv]);
  }
  p.dispose();
});

test("AlphaEdit: spread over the last four blocks, each projected update leaves its preserved keys' outputs unchanged and the edit holds; each method edits without leaking", async () => {
  await setup();
  const model = loadModel(BASE);
  try {
    const preserve = worldStream(getWorld(), 10, 0).preserve;
    const k0 = preservedKeys(model, WEIGHT, preserve, 256);
    assert.equal(k0.shape[0], 256);
    const p = nullSpaceProjector(k0);
    // K₀ P ≈ 0 relative to K₀.
    const rel = tf.tidy(() => tf.div(tf.norm(tf.matMul(k0, p)), tf.norm(k0)).dataSync()[0]);
    assert.ok(rel < 1e-4, `‖K₀P‖/‖K₀‖ = ${rel}`);
    assert.throws(() => nullSpaceProjector(tf.zeros([512, 512]) as tf.Tensor2D), /512 preserved keys in 512 dimensions leave no null space/);
    p.dispose();
    k0.dispose();
    const [alpha] = lifelongMethods(model, ["AlphaEdit"], preserve);
    const e = alpha.edit(model, [reqs[0]]);
    const weights = [0, 1, 2, 3].map((i) => `h.${i}.mlp.c_proj.weight`);
    assert.deepEqual(Object.keys(e.update!).sort(), weights);
    for (const w of weights) {
      const d = e.update![w];
      assert.ok(isLowRank(d));
      const k = preservedKeys(model, w, preserve, 256);
      const moved = tf.tidy(() => tf.div(tf.norm(tf.matMul(k, tf.mul(d.alpha, tf.matMul(tf.transpose(d.keys), d.values)))), tf.norm(tf.matMul(k, model.params[w]))).dataSync()[0]);
      const own = tf.tidy(() => tf.div(tf.norm(tf.matMul(tf.transpose(d.keys), d.values)), tf.norm(model.params[w])).dataSync()[0]);
      k.dispose();
      assert.ok(moved < 1e-4 && own > 1e-3, `${w}: preserved outputs moved by ${moved} (relative), the weight by ${own}`);
      // Each weight's own state, read back from the joined one.
      assert.deepEqual(weightState(e.state, weights, w)!.tensors.a_inv.shape, [512, 512]);
    }
    assert.equal(scoreTargets(e.model, [reqs[0]])[0].exact, true, "the edit holds");
    assert.deepEqual(Object.keys(e.state!.tensors).sort(), weights.map((w) => `${w}/a_inv`));
    disposeMethodEdit(e);
    alpha.dispose?.();
    // Every lifelong method: three edits in a row, then again: the tensor count does not grow.
    for (const name of ["UltraEdit", "AlphaEdit", "LocFT-BF"]) {
      const [m] = lifelongMethods(model, [name], preserve);
      const chain = () => {
        let cur: EditedModel = model;
        for (const r of reqs) {
          const x = m.edit(cur, [r]);
          disposeMethodEdit({ ...x, model: { dispose() {} } as EditedModel });
          if (cur !== model) replaceModel(cur, x.model);
          cur = x.model;
        }
        const held = scoreTargets(cur, reqs).filter((s) => s.exact).length;
        if (cur !== model) cur.dispose();
        return held;
      };
      chain();
      const before = tf.memory().numTensors;
      const held = chain();
      assert.equal(tf.memory().numTensors, before, `${name} leaked`);
      assert.ok(held >= 2, `${name}: ${held} of 3 sequential edits hold`);
      m.dispose?.();
    }
  } finally {
    disposeParams(model.params);
  }
});

test("UltraEdit carries running statistics and LocFT-BF the requests from one edit to the next", async () => {
  await setup();
  const model = loadModel(BASE);
  try {
    const [ultra, ft] = lifelongMethods(model, ["UltraEdit", "LocFT-BF"]);
    const a = ultra.edit(model, [reqs[0]]);
    const b = ultra.edit(a.model, [reqs[1]]);
    assert.equal(a.state!.meta.count, 1);
    assert.equal(b.state!.meta.count, 2, "the second edit merged its row into the first's statistics");
    const c = ft.edit(model, [reqs[0]]);
    const d2 = ft.edit(c.model, [reqs[1]]);
    assert.deepEqual(d2.state!.meta.requests, [reqs[0], reqs[1]]);
    for (const e of [b, a, d2, c]) disposeMethodEdit(e);
  } finally {
    disposeParams(model.params);
  }
});

test("LocFT-BF follows the official rule: epochs over every edit so far until the average loss is below 1e-2 (both edits then hold at p ≈ 0.99), and a mini-batch already below it takes no step", async () => {
  await setup();
  const model = loadModel(BASE);
  try {
    const w = "h.3.mlp.c_proj.weight";
    const cfg = { weights: [w], lr: 1e-2, batchSize: 16, maxEpochs: 100 };
    const first = locFtBfEdit(model, [reqs[0]], cfg, undefined);
    const once = new ParamsModel(model.config, { ...model.params, [w]: tf.add(model.params[w], first.update[w].delta) }, model.tokenizer);
    const second = locFtBfEdit(once, [reqs[2]], cfg, first.state);
    assert.ok(first.epochs < cfg.maxEpochs && second.epochs < cfg.maxEpochs, `stopped by the loss, not the epoch cap (${first.epochs}, ${second.epochs} epochs)`);
    const twice = new ParamsModel(model.config, { ...once.params, [w]: tf.add(once.params[w], second.update[w].delta) }, model.tokenizer);
    const scores = scoreTargets(twice, [reqs[0], reqs[2]]);
    const perToken = scores.map((s) => -s.logProb / s.argmax.length);
    assert.ok(scores.every((s) => s.exact), "both edits hold");
    assert.ok(perToken.reduce((a, b) => a + b) / perToken.length < 1e-2, `the last epoch's average token NLL is below 1e-2 (${perToken.map((x) => x.toFixed(4)).join(", ")})`);
    // Every request already below the threshold: one epoch, no step, ΔW = 0.
    const again = locFtBfEdit(twice, [reqs[2]], cfg, first.state);
    assert.equal(again.steps, 0);
    assert.equal(again.epochs, 1);
    assert.equal(tf.tidy(() => tf.max(tf.abs(again.update[w].delta)).dataSync()[0]), 0);
    tf.dispose([once.params[w], twice.params[w], ...[first, second, again].map((e) => e.update[w].delta)]);
  } finally {
    disposeParams(model.params);
  }
});

test("the lifelong benchmark: a seeded stream of distinct facts, disjoint probes and preserved facts, measured every k edits", async () => {
  await setup();
  const world = getWorld();
  const s = worldStream(world, 12, 3);
  const again = worldStream(world, 40, 3);
  assert.deepEqual(s.edits.map((r) => [r.subject, r.relation, r.target_new]), again.edits.slice(0, 12).map((r) => [r.subject, r.relation, r.target_new]), "a shorter stream is the start of a longer one");
  assert.deepEqual(s.probes, again.probes, "the probes do not depend on the length");
  const keys = (xs: { subject: string; relation: string }[]) => xs.map((f) => `${f.subject}|${f.relation}`);
  assert.equal(new Set(keys(s.edits)).size, 12, "distinct facts");
  assert.ok(s.edits.every((r) => r.target_new !== r.target_true));
  const probePrompts = new Set(s.probes.map((p) => p.prompt));
  assert.ok(s.edits.every((r) => [...r.prompts, ...r.heldout_prompts].every((p) => !probePrompts.has(p))), "no probe is an edited fact's prompt");
  assert.ok(s.preserve.every((p) => !probePrompts.has(p.prompt)), "no probe is preserved");
  assert.throws(() => worldStream(world, 900, 0), /room for at most 811 edits, not 900/);
  const model = loadModel(BASE);
  try {
    const [m] = lifelongMethods(model, ["AlphaEdit"], s.preserve);
    const before = tf.memory().numTensors;
    const c = runLifelong(model, m, s, 5);
    assert.equal(tf.memory().numTensors, before, "the run leaked");
    assert.deepEqual(c.points.map((p) => p.edits), [5, 10, 12]);
    // Retention at the end, recomputed independently: the same chain of edits, scored once.
    let cur: EditedModel = model;
    for (const r of s.edits) {
      const x = m.edit(cur, [{ prompt: r.prompts[0], target: r.target_new }]);
      disposeMethodEdit({ ...x, model: { dispose() {} } as EditedModel });
      if (cur !== model) replaceModel(cur, x.model);
      cur = x.model;
    }
    const ret = scoreTargets(cur, s.edits.map((r) => ({ prompt: r.prompts[0], target: r.target_new }))).filter((x) => x.exact).length / s.edits.length;
    assert.equal(c.points[2].retention, ret);
    assert.ok(c.points[2].weight_growth > 0);
    (cur as ParamsModel).dispose();
    m.dispose?.();
  } finally {
    disposeParams(model.params);
  }
});

test("the lifelong targets pass only when one method meets all of a length's thresholds", () => {
  const pt = (edits: number, retention: number, paraphrase: number, loc: number, sec = 10) => ({ edits, retention, paraphrase, locality: { overall: loc, same_subject: loc, other: loc }, acc_dd: 0, weight_growth: 1, edit_seconds: sec });
  const r = (curves: Record<string, ReturnType<typeof pt>[]>): LifelongResult => ({ source: "facts world, seed 0", edits: 500, every: 10, report: [100, 500], probes: 1, backend: "wasm", seconds: 1, curves: Object.fromEntries(Object.entries(curves).map(([m, points]) => [m, { method: m, points, edits_per_sec: 1, seconds: 1 }])) });
  const split = lifelongTargets(r({ A: [pt(100, 0.99, 0.95, 0.8), pt(500, 0.95, 0.9, 0.95, 400)], B: [pt(100, 0.9, 0.5, 0.99), pt(500, 0.95, 0.9, 0.95)] }));
  assert.deepEqual(split.map((t) => t.ok), [false, true], "100: no single method meets all three; 500: B does in time, A is too slow");
  assert.match(split[0].best, /^A 0\.990 \/ 0\.950 \/ 0\.800; B/);
  assert.deepEqual(lifelongTargets({ ...r({ A: [pt(100, 1, 1, 1)] }), source: "counterfact:x, seed 0" }), []);
});

test("replaying a ledger without its last edit is undo; without an earlier one, the later edits are made again and differ", async () => {
  await setup();
  const model = loadModel(BASE);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mend-replay-"));
  const [m] = lifelongMethods(model, ["AlphaEdit"]);
  const ledger = EditLedger.start(model);
  try {
    for (const r of reqs) {
      const cur = ledger.model();
      const e = m.edit(cur, [r]);
      e.model.dispose();
      cur.dispose();
      ledger.add({ method: "AlphaEdit", requests: [r], update: e.update!, state: e.state, latencyMs: e.latencyMs });
    }
    const last = replayWithout(ledger, 3, () => m);
    const first = replayWithout(ledger, 1, () => m);
    assert.deepEqual(first.entries.map((e) => e.id), [2, 3], "replayed entries keep their ids");
    const undoLast = ledger.prefixBefore(3);
    const [a, b] = [last.model(), undoLast.model()];
    assert.equal(maxAbsDiff(a.params[WEIGHT], b.params[WEIGHT]), 0, "without the last edit, replay = undo");
    const undoFirst = ledger.without(1);
    assert.deepEqual(undoFirst.entries.map((e) => e.id), [2, 3]);
    assert.deepEqual(ledger.entries.map((e) => e.id), [1, 2, 3], "without() leaves the ledger as it was");
    const [c, d] = [first.model(), undoFirst.model()];
    assert.ok(maxAbsDiff(c.params[WEIGHT], d.params[WEIGHT]) > 1e-6, "without the first edit, the replayed updates differ from the recorded ones");
    // Saved with the model, read back and checked against the weights.
    saveLedgerModel(path.join(dir, "m"), first, {});
    const saved = loadModel(path.join(dir, "m"));
    const back = readLedger(path.join(dir, "m"), model, saved.params);
    assert.deepEqual(back.entries.map((e) => e.id), [2, 3]);
    // Only the newest state is saved; a replay that needs an older one makes the edits before it again, identically.
    assert.deepEqual(back.entries.map((e) => [e.stateOmitted ?? false, Object.keys(e.state?.tensors ?? {}).length]), [[true, 0], [false, 4]]);
    const again = replayWithout(back, 3, () => m);
    const undo3 = back.without(3);
    const [g, h] = [again.model(), undo3.model()];
    for (const w of Object.keys(first.entries[0].update)) assert.equal(maxAbsDiff(g.params[w], h.params[w]), 0, `${w}: edit 2 made again from W0 = edit 2 as recorded`);
    for (const x of [a, b, c, d, g, h]) x.dispose();
    for (const l of [last, first, undoLast, undoFirst, back, again, undo3]) l.dispose();
    disposeParams(saved.params);
  } finally {
    ledger.dispose();
    m.dispose?.();
    disposeParams(model.params);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function mend(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), ...args], { encoding: "utf8", timeout: 300_000 });
}

test("mend edit --save, mend ledger undo / replay / diff, and mend lifelong from the command line", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mend-ledger-cli-"));
  try {
    const e1 = path.join(dir, "e1");
    const e2 = path.join(dir, "e2");
    let r = mend("edit", "--method", "AlphaEdit", "--prompt", reqs[0].prompt, "--target", reqs[0].target, "--save", e1, "--json");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).edit_id, 1);
    r = mend("edit", "--model", e1, "--method", "AlphaEdit", "--prompt", reqs[1].prompt, "--target", reqs[1].target, "--save", e2, "--json");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).edit_id, 2);
    r = mend("ledger", "--model", e2, "--json");
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).edits.map((e: { method: string }) => e.method), ["AlphaEdit", "AlphaEdit"]);
    r = mend("ledger", "--model", e2, "--diff", BASE, "--json");
    assert.deepEqual(JSON.parse(r.stdout).changed.map((c: { prompt: string }) => c.prompt).sort(), [reqs[0].prompt, reqs[1].prompt].sort());
    r = mend("ledger", "--model", e2, "--undo", "1", "--save", path.join(dir, "u"), "--json");
    assert.notEqual(r.status, 0, "edit 2's AlphaEdit state holds edit 1's keys: undo would keep them");
    assert.match(r.stderr, /edit 1 \(AlphaEdit\) left method state that the later edit\(s\) 2 carried on: .* Use --replay 1 --save DIR/);
    r = mend("ledger", "--model", e2, "--undo", "2", "--save", path.join(dir, "u"), "--json");
    assert.equal(r.status, 0, r.stderr);
    r = mend("ledger", "--model", path.join(dir, "u"), "--diff", BASE, "--json");
    assert.deepEqual(JSON.parse(r.stdout).changed.map((c: { prompt: string }) => c.prompt), [reqs[0].prompt], "undo removed exactly the newest edit");
    r = mend("ledger", "--model", e2, "--replay", "1", "--save", path.join(dir, "r"), "--json");
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.ok(rep.undo_vs_replay > 0 && rep.later_held_after_replay === 1, r.stdout);
    assert.deepEqual(rep.made_again, [2]);
    // Only the newest entry's state is saved; replaying without edit 2 then makes edit 1 again.
    const file = JSON.parse(fs.readFileSync(path.join(e2, "edits.json"), "utf8"));
    assert.deepEqual(file.entries.map((e: { state: { omitted?: boolean; tensors: string[] } }) => [e.state.omitted ?? false, e.state.tensors.length]), [[true, 0], [false, 4]]);
    r = mend("ledger", "--model", e2, "--replay", "2", "--save", path.join(dir, "r2"), "--json");
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).made_again, [1]);
    // A tampered folder is refused on load.
    fs.copyFileSync(path.join(BASE, "model.safetensors"), path.join(dir, "u", "model.safetensors")); // W0, not W0 + edit 1
    r = mend("ledger", "--model", path.join(dir, "u"));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /manifest|not W0 plus the recorded edits/);
    r = mend("lifelong", "--edits", "10", "--every", "5", "--report", "10", "--methods", "AlphaEdit,FT", "--out", path.join(dir, "ll"), "--json");
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(res.curves), ["AlphaEdit", "FT"]);
    assert.deepEqual(res.curves.AlphaEdit.points.map((p: { edits: number }) => p.edits), [5, 10]);
    assert.ok(fs.existsSync(path.join(dir, "ll", "report.html")));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the edit ledger from the command line on a generated GPT-2 folder: AlphaEdit with --preserve, UltraEdit, undo, replay, diff", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mend-ledger-gpt2-"));
  try {
    const g = path.join(dir, "g");
    let r = mend("random-gpt2", "--out", g);
    assert.equal(r.status, 0, r.stderr);
    const keep = path.join(dir, "keep.json");
    fs.writeFileSync(keep, JSON.stringify([{ prompt: "The sky is", target: "blue" }, { prompt: "Water boils at", target: "100 degrees" }, { prompt: "The capital of Italy is", target: "Rome" }]));
    r = mend("edit", "--model", g, "--method", "AlphaEdit", "--prompt", "The capital of France is", "--target", "Rome", "--save", path.join(dir, "e1"), "--json");
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /AlphaEdit on a model outside the facts world need prompts to preserve: --preserve FILE\.json/);
    r = mend("edit", "--model", g, "--method", "AlphaEdit", "--preserve", keep, "--prompt", "The capital of France is", "--target", "Rome", "--save", path.join(dir, "e1"), "--json");
    assert.equal(r.status, 0, r.stderr);
    r = mend("edit", "--model", path.join(dir, "e1"), "--base", g, "--method", "UltraEdit", "--weights", "h.0.mlp.c_proj.weight", "--prompt", "The president is", "--target", "Biden", "--save", path.join(dir, "e2"), "--json");
    assert.equal(r.status, 0, r.stderr);
    // AlphaEdit spread over every block's mlp.c_proj by default, UltraEdit on the one weight named.
    const layout = JSON.parse(fs.readFileSync(path.join(dir, "e2", "edits.json"), "utf8")).entries.map((e: { update: object }) => Object.keys(e.update).sort());
    const nLayer = JSON.parse(fs.readFileSync(path.join(g, "config.json"), "utf8")).n_layer;
    assert.deepEqual(layout, [Array.from({ length: Math.min(4, nLayer) }, (_, i) => `h.${nLayer - Math.min(4, nLayer) + i}.mlp.c_proj.weight`), ["h.0.mlp.c_proj.weight"]]);
    r = mend("ledger", "--model", path.join(dir, "e2"), "--base", path.join(ROOT, "checkpoints", "base"), "--json");
    assert.notEqual(r.status, 0, "another base is refused");
    assert.match(r.stderr, /made to the base model with fingerprint .*--base DIR/);
    r = mend("ledger", "--model", path.join(dir, "e2"), "--json"); // the base is the folder the ledger recorded
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).edits.map((e: { method: string }) => e.method), ["AlphaEdit", "UltraEdit"]);
    r = mend("ledger", "--model", path.join(dir, "e2"), "--base", g, "--undo", "2", "--save", path.join(dir, "u"), "--json");
    assert.equal(r.status, 0, r.stderr);
    r = mend("ledger", "--model", path.join(dir, "e2"), "--base", g, "--replay", "1", "--preserve", keep, "--save", path.join(dir, "r"), "--json");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).later_edits, 1);
    const replayed = JSON.parse(fs.readFileSync(path.join(dir, "r", "edits.json"), "utf8")).entries.map((e: { update: object }) => Object.keys(e.update));
    assert.deepEqual(replayed, [["h.0.mlp.c_proj.weight"]], "the replay edits the weights the recorded edit did");
    r = mend("ledger", "--model", path.join(dir, "u"), "--base", g, "--diff", path.join(dir, "e1"), "--json");
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { compared: 1, changed: [] }, "undoing edit 2 of e2 gives e1's model");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

for (const name of ["LocFT-BF", "UltraEdit", "AlphaEdit"]) {
  test(`${name}: removing edit 2 of 3 forgets it: undo is refused (a later state holds it), replay's state and weights equal the stream 1, 3 made afresh, and a next edit does not bring fact 2 back`, async () => {
    await setup();
    const model = loadModel(BASE);
    const [m] = lifelongMethods(model, [name]);
    const run = (requests: typeof reqs) => {
      const l = EditLedger.start(model);
      for (const r of requests) {
        const cur = l.model();
        const e = m.edit(cur, [r]);
        e.model.dispose();
        cur.dispose();
        l.add({ method: name, requests: [r], update: e.update!, state: e.state, latencyMs: e.latencyMs });
      }
      return l;
    };
    const all = run(reqs);
    const fresh = run([reqs[0], reqs[2]]);
    const replayed = replayWithout(all, 2, () => m);
    try {
      assert.deepEqual(stateCarriedPast(all.entries, 2).map((e) => e.id), [3], "undo would keep edit 2 in edit 3's state");
      const [s, t] = [replayed.entries.at(-1)!.state!, fresh.entries.at(-1)!.state!];
      assert.deepEqual(s.meta, t.meta);
      assert.deepEqual(Object.keys(s.tensors).sort(), Object.keys(t.tensors).sort());
      for (const k of Object.keys(t.tensors)) assert.ok(maxAbsDiff(s.tensors[k], t.tensors[k]) <= 1e-6, `state ${k}`);
      const [a, b] = [replayed.model(), fresh.model()];
      for (const w of Object.keys(fresh.entries[0].update)) assert.ok(maxAbsDiff(a.params[w], b.params[w]) <= 1e-6, `weights ${w}`);
      a.dispose();
      b.dispose();
      // one more edit on the replayed stream: fact 2 stays forgotten
      const cur = replayed.model();
      const e = m.edit(cur, [{ prompt: "The capital of Kenya is", target: "Lima" }]);
      const [fact2] = scoreTargets(e.model, [reqs[1]]);
      assert.equal(fact2.exact, false, `${name} brought "${reqs[1].prompt}" -> ${reqs[1].target} back`);
      disposeMethodEdit(e);
      cur.dispose();
      checkLedgerStates(replayed.entries, "replayed"); // what it remembers is what its edits made
    } finally {
      for (const l of [all, fresh, replayed]) l.dispose();
      m.dispose?.();
      disposeParams(model.params);
    }
  });
}
