import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import * as path from "path";
import { fineTuneEdit } from "../dist/baselines/fineTune";
import { disposeMethodEdit, fineTuneMethod, paramsOf } from "../dist/eval/methods";
import { DEFAULT_EVAL_CONFIG, evaluateMethods } from "../dist/eval/evaluate";
import { applyUpdates } from "../dist/model/paramsModel";
import { disposeUpdate } from "../dist/model/weightUpdate";
import { autodiffWeightGradient } from "../dist/mend/factor";
import { disposeParams } from "../dist/model/gpt";
import { loadModel } from "../dist/model/modelFolder";
import { scoreTargets } from "../dist/model/score";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { getWorld, leaked, ROOT, setup, tinyModel } from "./helpers";

const inner = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"];
const req = { prompt: "The capital of Peru is", target: "Madrid" };

// A random tiny model cannot express a new argmax through its MLPs (tied wte at std 0.02 behind
// ln_f gives logits almost no range), so this test fine-tunes the shipped base model.
test("FT fine-tunes only the edited weights until the target is the argmax, without touching the base", async () => {
  await setup();
  const m = loadModel(path.join(ROOT, "checkpoints", "base"));
  const inner = ["h.3.mlp.c_fc.weight", "h.3.mlp.c_proj.weight"];
  const before = m.params["h.3.mlp.c_fc.weight"].arraySync();
  const e = fineTuneEdit(m, [req], { innerParams: inner, lr: 1e-3, maxSteps: 100, cEdit: null, locTexts: [] });
  assert.deepEqual(Object.keys(e.update).sort(), [...inner].sort());
  assert.ok(e.steps > 0 && e.steps < 100, `stopped early (${e.steps} steps)`);
  const edited = applyUpdates(m, [e.update]);
  assert.ok(scoreTargets(edited, [req])[0].exact, "target is the argmax after FT");
  assert.ok(!scoreTargets(m, [req])[0].exact, "base still answers otherwise");
  assert.deepEqual(m.params["h.3.mlp.c_fc.weight"].arraySync(), before);
  edited.dispose();
  disposeUpdate(e.update);
  disposeParams(m.params);
});

test("FT+KL runs with a locality term, respects maxSteps and leaks nothing", async () => {
  await setup();
  const m = tinyModel(42);
  const cfg = { innerParams: inner, lr: 1e-4, maxSteps: 3, cEdit: 1e-2, locTexts: [{ prompt: "The capital of Chile is", target: "Santiago" }] };
  disposeUpdate(fineTuneEdit(m, [req], cfg).update);
  const n = await leaked(() => {
    const e = fineTuneEdit(m, [req], cfg);
    assert.equal(e.steps, 3);
    disposeUpdate(e.update);
  });
  assert.equal(n, 0);
  assert.equal(tf.memory().numTensors > 0, true);
  disposeParams(m.params);
});

test("FT with RMSprop (the official optimiser) takes PyTorch's first step, -10·lr·sign(g); unknown optimisers are errors", async () => {
  await setup();
  const m = tinyModel(44);
  const name = inner[1];
  const b = makeBatch(m.tokenizer, [req], "target", m.config.n_positions);
  const g = autodiffWeightGradient(m.params, m.config, b, name).dataSync();
  disposeBatch(b);
  const lr = 1e-3;
  const e = fineTuneEdit(m, [req], { innerParams: inner, lr, optimizer: "rmsprop", maxSteps: 1, cEdit: null, locTexts: [] });
  assert.equal(e.steps, 1);
  const w0 = m.params[name].dataSync();
  const w1 = tf.tidy(() => tf.add(m.params[name], e.update[name].delta)).dataSync();
  let checked = 0;
  for (let i = 0; i < g.length; i++) {
    if (Math.abs(g[i]) < 1e-6) continue; // ε matters only for vanishing gradients
    assert.ok(Math.abs(w1[i] - w0[i] + 10 * lr * Math.sign(g[i])) < 1e-6, `element ${i}: step ${w1[i] - w0[i]}, gradient ${g[i]}`);
    checked++;
  }
  assert.ok(checked > g.length / 2, `${checked} of ${g.length} elements have a gradient`);
  disposeUpdate(e.update);
  assert.equal(await leaked(() => disposeUpdate(fineTuneEdit(m, [req], { innerParams: inner, lr, optimizer: "rmsprop", maxSteps: 3, cEdit: null, locTexts: [] }).update)), 0, "RMSprop's accumulators are freed");
  assert.throws(() => fineTuneEdit(m, [req], { innerParams: inner, lr, optimizer: "sgd" as never, maxSteps: 1, cEdit: null, locTexts: [] }), /unknown FT optimizer "sgd"/);
  disposeParams(m.params);
});

test("the method registry: names as given, each method says what it lacks, unknown names are errors", async () => {
  await setup();
  const { buildMethods } = await import("../dist/eval/methods");
  const { createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor } = await import("../dist/mend");
  const m = tinyModel(43);
  const e = createEditor({ ...DEFAULT_EDITOR_CONFIG, innerParams: inner, rank: 8 }, Object.fromEntries(inner.map((n) => [n, m.params[n].shape])), 0);
  const locTexts = [{ prompt: "The capital of Chile is", target: "Santiago" }];
  assert.deepEqual(buildMethods(["MEND", "MEND-batch", "FT", "FT+KL"], { editor: e, batchEditor: e, locTexts }).map((x) => x.name), ["MEND", "MEND-batch", "FT", "FT+KL"]);
  assert.throws(() => buildMethods(["MEND-batch"], { editor: e }), /MEND-batch needs the batch-trained editor/);
  assert.throws(() => buildMethods(["MEND"], {}), /MEND needs an editor/);
  assert.throws(() => buildMethods(["FT+KL"], { editor: e }), /FT\+KL needs locality texts/);
  assert.throws(() => buildMethods(["ROME"], { editor: e }), /unknown method "ROME"/);
  assert.throws(() => buildMethods(["MEND-batch-pres"], { batchEditor: e }), /MEND-batch-pres needs prompts to preserve/);
  assert.equal(await leaked(() => {
    const [pres] = buildMethods(["MEND-batch-pres"], { batchEditor: e, preserve: { model: m, prompts: ["The capital of Chile is"] } }); // measures its preservation set on m
    assert.equal(pres.name, "MEND-batch-pres");
    pres.dispose!();
  }), 0, "dispose frees the preservation set");
  // FT's lr and optimiser: checked when the methods are made, and used by the edit.
  assert.throws(() => buildMethods(["FT"], { editor: e, ft: { optimizer: "sgd" as never } }), /unknown FT optimizer "sgd"/);
  assert.throws(() => buildMethods(["FT"], { editor: e, ft: { lr: -1 } }), /FT lr must be a positive number, got -1/);
  const edited = (ft: { lr?: number; optimizer?: "adam" | "rmsprop" }) => {
    const [method] = buildMethods(["FT"], { editor: e, ft });
    const r = method.edit(m, [req]);
    const w = paramsOf(r.model, "test").params[inner[1]].dataSync().slice();
    disposeMethodEdit(r);
    return w;
  };
  const rms = edited({});
  assert.deepEqual(edited({ optimizer: "rmsprop", lr: 4e-4 }), rms, "the default is RMSprop at 4e-4");
  assert.notDeepEqual(edited({ optimizer: "adam" }), rms);
  disposeEditor(e);
  disposeParams(m.params);
});

test("FT keeps stepping with stopAtArgmax false; fineTuneMethod tunes on the training set it is given; sequential runs report the weights' distance", async () => {
  await setup();
  const m = loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = getWorld();
  const inner3 = ["h.3.mlp.c_fc.weight", "h.3.mlp.c_proj.weight"];
  const stops = fineTuneEdit(m, [req], { innerParams: inner3, lr: 1e-3, maxSteps: 20, cEdit: null, locTexts: [] });
  const keeps = fineTuneEdit(m, [req], { innerParams: inner3, lr: 1e-3, maxSteps: 20, cEdit: null, locTexts: [], stopAtArgmax: false });
  assert.ok(stops.steps < 20, "stops at the argmax by default");
  assert.equal(keeps.steps, 20, "takes every step when told not to stop");
  [stops, keeps].forEach((e) => disposeUpdate(e.update));
  // the training set: the request and its training paraphrases, all with the request's target
  const para = world.trainingParaphrases({ prompt: "The capital of Peru is", target: "Madrid" });
  assert.ok(para.length >= 3 && para.every((p) => p.target === "Madrid" && p.prompt !== "The capital of Peru is"));
  assert.ok(para.every((p) => world.matchPrompt(p.prompt)?.fact.subject === "Peru"));
  assert.throws(() => world.trainingParaphrases({ prompt: "Peru is nice", target: "x" }), /none of the world's templates/);
  const seen: number[] = [];
  const method = fineTuneMethod({ innerParams: inner3, lr: 1e-3, maxSteps: 2, cEdit: null, locTexts: [] }, "FT+para", (rs) => {
    const set = rs.flatMap((r) => [r, ...world.trainingParaphrases(r)]);
    seen.push(set.length);
    return set;
  });
  const e = method.edit(m, [req]);
  assert.deepEqual(seen, [1 + para.length]);
  disposeMethodEdit(e);
  // sequential: the distance from the base grows with the edits and is 0 for none
  const records = world.editRecords("test").slice(0, 3);
  const r = evaluateMethods(m, world, [fineTuneMethod({ innerParams: inner3, lr: 1e-3, maxSteps: 5, cEdit: null, locTexts: [] })], records, { ...DEFAULT_EVAL_CONFIG, batchSizes: [], sequential: 3, heatmapEdits: 0, pplSentences: 2, sequentialProbes: 4 });
  const w = r.sequential["FT"].weightChange;
  assert.equal(w.length, 3);
  assert.ok(w[0] > 0 && w[2] >= w[0], `distance from the base after each edit: ${w}`);
  disposeParams(m.params);
});

// CI's check that each shipped method edits: a few test edits of the facts world with the shipped
// checkpoints (base, editor, KE, ENN; FT, FT+KL and the cache need none). Each edit must raise the new
// answer's log-probability on its edit prompt, leave the base model untouched and free what it made.
test("every method of the comparison edits with the shipped checkpoints: p(new answer) rises, the base is untouched, nothing leaks", async () => {
  await setup();
  const { buildMethods } = await import("../dist/eval/methods");
  const { loadKe, disposeKe } = await import("../dist/baselines/ke");
  const { loadEnn, disposeEnn } = await import("../dist/baselines/enn");
  const { cacheThreshold } = await import("../dist/baselines/cache");
  const { loadEditor } = await import("../dist/extensions/editorExtensions");
  const { disposeEditor } = await import("../dist/mend/editor");
  const { worldMethodContext } = await import("../dist/eval/evaluate");
  const m = loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = getWorld();
  const editor = loadEditor(path.join(ROOT, "checkpoints", "editor"), m.config, m.params);
  const ke = loadKe(path.join(ROOT, "checkpoints", "ke"), m);
  const enn = loadEnn(path.join(ROOT, "checkpoints", "enn"), m);
  const eps = cacheThreshold(m, world.editRecords("val").slice(0, 20)).threshold;
  const methods = buildMethods(["MEND", "KE", "ENN", "cache", "FT", "FT+KL"], { editor, ke, enn, cacheThreshold: eps, ...worldMethodContext(world, m) });
  const records = world.editRecords("test").slice(0, 3);
  const before = m.params["h.3.mlp.c_fc.weight"].arraySync();
  const pre = scoreTargets(m, records.map((r) => ({ prompt: r.prompts[0], target: r.target_new })));
  for (const method of methods) {
    disposeMethodEdit(method.edit(m, [{ prompt: records[0].prompts[0], target: records[0].target_new }])); // first use may build caches it keeps
    const n = await leaked(() => {
      records.forEach((r, i) => {
        const e = method.edit(m, [{ prompt: r.prompts[0], target: r.target_new }]);
        const post = scoreTargets(e.model, [{ prompt: r.prompts[0], target: r.target_new }])[0];
        assert.ok(post.logProb > pre[i].logProb + 1e-3, `${method.name} on "${r.prompts[0]} ${r.target_new}": log p ${pre[i].logProb.toFixed(3)} → ${post.logProb.toFixed(3)}`);
        disposeMethodEdit(e);
      });
    });
    assert.equal(n, 0, `${method.name} leaks ${n} tensors`);
  }
  assert.deepEqual(m.params["h.3.mlp.c_fc.weight"].arraySync(), before);
  methods.forEach((x) => x.dispose?.());
  disposeKe(ke);
  disposeEnn(enn);
  disposeEditor(editor);
  disposeParams(m.params);
});
