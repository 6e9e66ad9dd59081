import test from "node:test";
import { localityPicker } from "../dist/extensions/localitySampling";
import assert from "node:assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { sameAnswerPool } from "../dist/extensions/localitySampling";
import { disposeEditor } from "../dist/mend/editor";
import { editorTrainingInfo, loadEditor } from "../dist/mend/editorFolder";
import { fixedValGroups, sampleMetaBatch } from "../dist/mend/metaExamples";
import { DEFAULT_TRAIN_EDITOR_CONFIG, trainEditor } from "../dist/mend/train";
import { disposeParams } from "../dist/model/gpt";
import { Rng } from "../dist/model/rng";
import { distinctFacts } from "../dist/datasets/editRecord";
import { spawnSync } from "child_process";
import { getWorld, ROOT, setup, tinyModel, warmEditor } from "./helpers";

const cfg = { ...DEFAULT_TRAIN_EDITOR_CONFIG, maxSteps: 6, accumulate: 4, valEvery: 3, valSize: 8, lr: 1e-3, editor: { rank: 16 } };

test("a few meta-training steps lower the validation loss; checkpoints keep statistics; no tensor growth", async () => {
  await setup();
  const m = tinyModel(51);
  const w = getWorld();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "te-"));
  const before = tf.memory().numTensors;
  const hist: number[] = [];
  const r = await trainEditor(m, w.editRecords("train"), w.editRecords("val"), dir, cfg, { onProgress: (p) => p.val && hist.push(p.val.total) });
  assert.equal(tf.memory().numTensors, before, "training leaves no tensors behind");
  assert.equal(r.steps, 6);
  assert.ok(hist.length === 2 && Number.isFinite(hist[0]));
  assert.ok(r.best.total <= hist[0], `best ${r.best.total} <= first ${hist[0]}`);
  const e = loadEditor(r.bestDir, m.config, m.params);
  for (const net of Object.values(e.nets)) assert.ok(net.stats.count > 0, "statistics restored from the checkpoint");
  assert.ok((editorTrainingInfo(r.bestDir) as { examples: number }).examples > 0);
  disposeEditor(e);
  disposeParams(m.params);
});

test("training resumes from the last checkpoint with its step, statistics and optimizer state", async () => {
  await setup();
  const m = tinyModel(52);
  const w = getWorld();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "te-"));
  await trainEditor(m, w.editRecords("train"), w.editRecords("val"), dir, { ...cfg, maxSteps: 3 }, {});
  const counts = Object.values(loadEditor(path.join(dir, "last"), m.config, m.params).nets).map((n) => n.stats.count);
  const state = JSON.parse(fs.readFileSync(path.join(dir, "last", "trainer_state.json"), "utf8"));
  assert.equal(state.step, 3);
  const steps: number[] = [];
  const r = await trainEditor(m, w.editRecords("train"), w.editRecords("val"), dir, cfg, { resume: true, resumeWith: { maxSteps: 6 }, onProgress: (p) => steps.push(p.step) });
  assert.deepEqual(steps, [4, 5, 6], "a larger step count given with resume applies");
  assert.equal(r.stepsRun, 3);
  const e = loadEditor(path.join(dir, "last"), m.config, m.params);
  Object.values(e.nets).forEach((n, i) => assert.ok(n.stats.count > counts[i], "statistics kept growing from the restored values"));
  assert.equal(r.steps, 6);
  disposeEditor(e);
  disposeParams(m.params);
});

test("a meta-batch draws examples of distinct facts with two different templates each", () => {
  const exs = sampleMetaBatch(getWorld().editRecords("train"), new Rng(3), 10);
  assert.equal(exs.length, 10);
  assert.equal(new Set(exs.map((e) => e.editInner.prompt)).size, 10);
  for (const e of exs) {
    assert.equal(e.editInner.target, e.editOuter.target);
    assert.notEqual(e.editInner.prompt, e.editOuter.prompt);
  }
});

test("validation calls of k > 1 edits hold distinct facts (the split has several targets per fact); k = 1 keeps every edit", () => {
  const val = getWorld().editRecords("val");
  const facts = (rs: { subject: string; relation: string }[]) => new Set(rs.map((r) => `${r.subject}|${r.relation}`)).size;
  assert.ok(facts(val) < val.length, "the validation split edits some facts twice");
  const distinct = distinctFacts(val);
  assert.equal(distinct.length, facts(val));
  assert.deepEqual(distinct[0], val[0], "the first record of each fact, in order");
  const groups = fixedValGroups(val, 80, [1, 25]);
  const singles = groups.filter((g) => g.length === 1);
  assert.equal(singles.length, 80);
  assert.deepEqual(singles.map((g) => g[0].editInner.prompt), val.slice(0, 80).map((r) => r.prompts[0]));
  const calls = groups.filter((g) => g.length === 25);
  assert.equal(calls.length, Math.floor(Math.min(80, distinct.length) / 25));
  for (const g of calls) assert.equal(new Set(g.map((x) => x.editInner.prompt)).size, 25, "25 different facts' prompts");
});

test("meta-loss weighting: every edit call counts once, whatever its number of edits", async () => {
  await setup();
  const { fixedMetaExample, validateEditor } = await import("../dist/mend");
  const { warmEditor } = await import("./helpers");
  const m = tinyModel(44);
  const e = warmEditor(m);
  const ex = getWorld().editRecords("val").slice(0, 3).map((r, i) => fixedMetaExample(r, i));
  const loss = (groups: typeof ex[]) => validateEditor(m, e, groups, { cEdit: 0.1, cLoc: 1 }).total;
  const [a, bc] = [loss([[ex[0]]]), loss([[ex[1], ex[2]]])];
  assert.ok(Math.abs(loss([[ex[0]], [ex[1], ex[2]]]) - (a + bc) / 2) < 1e-6, "the mean over calls");
  const perEdit = (a + 2 * bc) / 3;
  assert.ok(Math.abs(loss([[ex[0]], [ex[1], ex[2]]]) - perEdit) > 1e-6, "not the mean over edits");
  disposeEditor(e);
  disposeParams(m.params);
});

test("extra locality texts share their edit's weight: duplicating x_loc leaves the meta-loss unchanged", async () => {
  await setup();
  const { metaBatchEval, editorVariables } = await import("../dist/mend");
  const m = tinyModel(53);
  const e = warmEditor(m, 5);
  const vars = editorVariables(e);
  for (const [k, v] of Object.entries(vars.net)) if (k.endsWith(".U")) v.assign(tf.randomNormal(v.shape, 0, 0.05, "float32", 7)); // a non-identity editor
  for (const v of Object.values(vars.editLrs)) v.assign(tf.scalar(0.1)); // and edits large enough to move x_loc
  const exs = sampleMetaBatch(getWorld().editRecords("train"), new Rng(4), 3);
  const one = metaBatchEval(m, e, [exs], DEFAULT_TRAIN_EDITOR_CONFIG);
  const three = metaBatchEval(m, e, [exs.map((x) => ({ ...x, extraLoc: [x.loc, x.loc] }))], DEFAULT_TRAIN_EDITOR_CONFIG);
  assert.ok(one[0].lLoc > 0, "the edit moves the locality text");
  assert.ok(Math.abs(three[0].lLoc - one[0].lLoc) < 1e-6 * Math.max(1, one[0].lLoc), `${three[0].lLoc} vs ${one[0].lLoc}`);
  assert.deepEqual(three.map((r) => r.locUnchanged), one.map((r) => r.locUnchanged));
  const drawn = sampleMetaBatch(getWorld().editRecords("train"), new Rng(4), 5, 0, localityPicker({ locPerEdit: 3, sameAnswerLoc: 0 }, getWorld().editRecords("train")));
  for (const x of drawn) assert.equal(new Set([x.loc, ...(x.extraLoc ?? [])].map((l) => l.prompt)).size, 3, "three distinct locality texts");
  disposeEditor(e);
  disposeParams(m.params);
});

test("same-answer locality texts: another subject's fact with the edit's relation and old answer", () => {
  const train = getWorld().editRecords("train");
  const pool = sameAnswerPool(train);
  for (const [key, ls] of pool) for (const l of ls) assert.equal(`${l.relation}|${l.target}`, key);
  const byPrompt = new Map(train.flatMap((r) => r.prompts.map((p) => [p, r] as const))); // any record of the fact
  const byEdit = new Map(train.flatMap((r) => r.prompts.map((p) => [`${p}|${r.target_new}`, r] as const))); // the edited record
  const exs = sampleMetaBatch(train, new Rng(5), 40, 0, localityPicker({ locPerEdit: 3, sameAnswerLoc: 1 }, train));
  let replaced = 0;
  for (const x of exs) {
    const edited = byEdit.get(`${x.editInner.prompt}|${x.editInner.target}`)!;
    const last = (x.extraLoc ?? [x.loc]).at(-1)!;
    const src = byPrompt.get(last.prompt);
    const others = (pool.get(`${edited.relation}|${edited.target_true}`) ?? []).filter((l) => l.subject !== edited.subject);
    if (others.length === 0) continue; // no other subject shares this answer: the drawn text stays
    replaced++;
    assert.ok(src, `"${last.prompt}" is a training prompt`);
    assert.equal(src.relation, edited.relation);
    assert.equal(last.target, edited.target_true);
    assert.notEqual(src.subject, edited.subject);
  }
  assert.ok(replaced > 10, `${replaced} of 40 edits had a same-answer text`);
  // p = 0 keeps every locality text from the edit's own locality examples
  for (const x of sampleMetaBatch(train, new Rng(6), 20, 0, localityPicker({ locPerEdit: 3, sameAnswerLoc: 0 }, train))) {
    const edited = byEdit.get(`${x.editInner.prompt}|${x.editInner.target}`)!;
    for (const l of [x.loc, ...(x.extraLoc ?? [])]) assert.ok(edited.locality.some((e) => e.prompt === l.prompt), l.prompt);
  }
});

test("the meta-loss scores the edit the edit API makes: L_edit equals the NLL of x'_e under mendEdit's weights", async () => {
  await setup();
  const { fixedMetaExample, validateEditor, mendEdit, disposeEdit } = await import("../dist/mend");
  const { scoreTargets, applyUpdates } = await import("../dist/model");
  const { warmEditor } = await import("./helpers");
  const m = tinyModel(45);
  const e = warmEditor(m);
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(-0.01)); // an edit large enough to move x'_e
  const ex = getWorld().editRecords("val").slice(0, 4).map((r, i) => fixedMetaExample(r, i));
  const val = validateEditor(m, e, ex.map((x) => [x]), { cEdit: 0.1, cLoc: 1 });
  let nll = 0;
  for (const x of ex) {
    const r = mendEdit(m, e, [x.editInner]);
    const edited = applyUpdates(m, [r.update]);
    const [s] = scoreTargets(edited, [x.editOuter]);
    nll += -s.logProb / s.argmax.length / ex.length;
    edited.dispose();
    disposeEdit(r);
  }
  assert.ok(Math.abs(val.lossEdit - nll) < 1e-3 * Math.max(1, nll), `meta-loss L_edit ${val.lossEdit} vs mendEdit's ${nll}`);
  disposeEditor(e);
  disposeParams(m.params);
});

test("validation losses do not depend on how the set is split into passes", async () => {
  await setup();
  const { fixedMetaExample, validateEditor } = await import("../dist/mend");
  const { warmEditor } = await import("./helpers");
  const m = tinyModel(46);
  const e = warmEditor(m);
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(-0.01));
  const ex = getWorld().editRecords("val").slice(0, 6).map((r, i) => fixedMetaExample(r, i));
  const groups = [[ex[0]], [ex[1], ex[2]], [ex[3]], [ex[4], ex[5]]];
  const one = validateEditor(m, e, groups, { cEdit: 0.1, cLoc: 1 }, { maxEditsPerPass: 40 });
  const twos = validateEditor(m, e, groups, { cEdit: 0.1, cLoc: 1 }, { maxEditsPerPass: 2 });
  assert.ok(Math.abs(one.total - twos.total) < 1e-6, `one pass ${one.total}, passes of 2 edits ${twos.total}`);
  disposeEditor(e);
  disposeParams(m.params);
});

test("a step's calls split over batched passes give the step of one pass (without statistics, which a later pass sees updated)", async () => {
  await setup();
  const { readSafetensors } = await import("../dist/model/safetensors");
  const w = getWorld();
  const weightsAfter = async (extra: Partial<typeof cfg>) => {
    const m = tinyModel(53);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "te-"));
    const before = tf.memory().numTensors;
    await trainEditor(m, w.editRecords("train"), w.editRecords("val"), dir, { ...cfg, maxSteps: 2, valEvery: 2, editor: { rank: 16, norm: false }, ...extra }, {});
    assert.equal(tf.memory().numTensors, before, "no tensors left behind");
    disposeParams(m.params);
    return readSafetensors(path.join(dir, "last", "editor.safetensors")).tensors;
  };
  const one = await weightsAfter({});
  const split = await weightsAfter({ callsPerPass: 1 });
  const uneven = await weightsAfter({ callsPerPass: 3 });
  for (const [name, t] of Object.entries(one)) {
    for (const other of [split, uneven]) {
      const d = Math.max(...Array.from(t.data, (x, i) => Math.abs(x - other[name].data[i])));
      assert.ok(d < 2e-6, `${name}: passes of 1 or 3 calls differ from one pass by ${d}`);
    }
  }
  const oneStep = await weightsAfter({ maxSteps: 1, valEvery: 1 });
  assert.ok(Object.entries(one).some(([n, t]) => Array.from(t.data).some((x, i) => Math.abs(x - oneStep[n].data[i]) > 1e-4)), "the second step moved the editor (the comparison is not of untrained weights)");
});

test("train-editor's --edit-lr-lr takes a positive number or 'main' and names anything else", () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), "train-editor", "--edit-lr-lr", "fast", "--run-dir", path.join(os.tmpdir(), "never")], { encoding: "utf8", env: { ...process.env, MEND_BACKEND: "wasm" } });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--edit-lr-lr fast: a positive number, or "main" for the networks' --lr/);
});

test("MEND_GELU=tanh reproduces the editor the shipped checkpoints' code trained, bit for bit (sha256 of 2026-12-06)", async (t) => {
  if ((process.env.MEND_BACKEND ?? "wasm") !== "wasm") return t.skip("the recorded digest is wasm's");
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "mend-gelu-tanh-"));
  try {
    const args = ["train-editor", "--rank", "320", "--per-fact", "20", "--loc-per-edit", "3", "--steps", "10", "--seed", "1", "--out", path.join(out, "editor")];
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), ...args], { encoding: "utf8", timeout: 300_000, env: { ...process.env, MEND_GELU: "tanh" } });
    assert.equal(r.status, 0, r.stderr);
    const digest = crypto.createHash("sha256").update(fs.readFileSync(path.join(out, "editor", "editor.safetensors"))).digest("hex");
    assert.equal(digest, "2a3f8e87e13be1d46d4d0b361611a40ae4ba2e25759846ecea9e108852ccc438"); // docs/research-log.md, 2026-12-06
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
