/**
 * MEND on a GPT-2 with the real tokenizer: an editor meta-trained for a few steps on the zsRE sample,
 * a multi-token edit applied and judged by the CounterFact and zsRE metrics, no tensors leaked; and
 * the same through the `mend` command line on a generated Hugging Face folder.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { counterfactScores } from "../dist/eval/counterfactMetrics";
import { loadDataset, splitRecords } from "../dist/datasets/records";
import { zsreScores } from "../dist/eval/zsreMetrics";
import { disposeEdit, mendEdit } from "../dist/mend/edit";
import { disposeEditor } from "../dist/mend/editor";
import { loadEditor } from "../dist/mend/editorFolder";
import { DEFAULT_TRAIN_EDITOR_CONFIG, trainEditor } from "../dist/mend/train";
import { BpeTokenizer, gpt2TokenizerFiles } from "../dist/model/bpeTokenizer";
import { disposeParams } from "../dist/model/gpt";
import { randomGpt2 } from "../dist/model/randomGpt2";
import { applyUpdates, ParamsModel } from "../dist/model/paramsModel";
import { scoreTargets } from "../dist/model/score";
import { CF_ROME_FILE, ROOT, ZSRE_FILE, setup } from "./helpers";

const ZSRE = ZSRE_FILE;
const CF = CF_ROME_FILE;

test("MEND on a tiny GPT-2 with GPT-2's BPE: trained on zsRE, a multi-token edit judged by CounterFact's and zsRE's metrics", async () => {
  await setup();
  const files = gpt2TokenizerFiles();
  const g = randomGpt2({ seed: 2 });
  const model = new ParamsModel(g.config, g.params, BpeTokenizer.fromFiles(files["vocab.json"], files["merges.txt"]), { owned: Object.values(g.params) });
  const zsre = loadDataset("zsre", ZSRE);
  const { train, val } = splitRecords(zsre.records, 4);
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "hf-train-"));
  const r = await trainEditor(model, train, val.slice(0, 4), runDir, { ...DEFAULT_TRAIN_EDITOR_CONFIG, maxSteps: 4, accumulate: 2, valEvery: 2, valSize: 4, editor: { rank: 32 } });
  assert.ok(Number.isFinite(r.best.total), "validation ran on the zsRE records");
  const editor = loadEditor(r.bestDir, model.config, model.params);
  assert.deepEqual(editor.config.innerParams, ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight", "h.2.mlp.c_fc.weight", "h.2.mlp.c_proj.weight", "h.3.mlp.c_fc.weight", "h.3.mlp.c_proj.weight"], "the official GPT-2 layers: the last three blocks' MLP");

  // A CounterFact case with a two-token new target.
  const cf = loadDataset("counterfact", CF).records[0];
  const record = { ...cf, target_new: "English language" };
  assert.equal(model.tokenizer.encode(" English language").length, 2);
  const req = { prompt: record.prompts[0], target: record.target_new };
  let before = 0;
  for (let i = 0; i < 3; i++) {
    const e = mendEdit(model, editor, [req]);
    const edited = applyUpdates(model, [e.update]);
    const [pre] = scoreTargets(model, [req]);
    const [post] = scoreTargets(edited, [req]);
    assert.equal(post.argmax.length, 2, "both target tokens are scored");
    assert.ok(post.logProb > pre.logProb, `the edit raises log p(" English language"): ${pre.logProb} -> ${post.logProb}`);
    const cfPre = counterfactScores(model, record);
    const cfPost = counterfactScores(edited, record);
    assert.ok(cfPost.efficacy_magnitude > cfPre.efficacy_magnitude, "efficacy magnitude P(new) - P(true) grows");
    for (const v of Object.values(cfPost)) assert.ok(Number.isFinite(v));
    const z = zsreScores(model, edited, zsre.records[0]);
    for (const v of Object.values(z)) assert.ok(v >= -1 && v <= 1);
    edited.dispose();
    disposeEdit(e);
    if (i === 0) before = tf.memory().numTensors; // the first edit builds the editor's cached constants
    else assert.equal(tf.memory().numTensors, before, `edit ${i} left no tensors`);
  }
  disposeEditor(editor);
  disposeParams(model.params);
});

function mend(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), ...args], { encoding: "utf8", timeout: 300_000, env: { ...process.env, MEND_BACKEND: process.env.MEND_BACKEND ?? "wasm" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("mend random-gpt2, train-editor --data zsre:FILE and edit --model DIR with a multi-token target", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "hf-cli-"));
  const modelDir = path.join(tmp, "gpt2");
  let r = mend("random-gpt2", "--out", modelDir, "--seed", "4", "--dtype", "F16", "--prefix");
  assert.equal(r.status, 0, r.stderr);
  r = mend("predict", "--model", modelDir, "--prompt", "The president of the United States is", "--json");
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).tokens, ["The", " president", " of", " the", " United", " States", " is"]);
  r = mend("edit", "--model", modelDir, "--prompt", "The president is", "--target", "Joe Biden");
  assert.equal(r.status, 1);
  assert.match(r.stderr, /train one for .* with "mend train-editor --model .* --data zsre:FILE"/);
  r = mend("train-editor", "--model", modelDir, "--data", `zsre:${ZSRE}`, "--run-dir", path.join(tmp, "run"), "--steps", "2", "--accumulate", "2", "--rank", "16");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /skipped 1 record\(s\): 426/);
  r = mend("train-editor", "--model", modelDir, "--data", `zsre:${ZSRE}`, "--per-fact", "3", "--run-dir", path.join(tmp, "run2"));
  assert.match(r.stderr, /a dataset brings its own \(drop --per-fact\)/);
  r = mend("edit", "--model", modelDir, "--editor", path.join(tmp, "run", "editor"), "--prompt", "The president of the United States is", "--target", "Joe Biden", "--paraphrase", "The US president is", "--json");
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.results.map((x: { kind: string }) => x.kind), ["edit", "paraphrase"]);
  assert.equal(typeof out.results[0].right.after, "boolean");
  assert.ok(out.layers.length === 6);
});

test("KE, ENN and the cache on a GPT-2 folder: train-editor --kind KE|ENN --data zsre:FILE, then eval --data with ROME's CounterFact metrics", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "hf-methods-"));
  const modelDir = path.join(tmp, "gpt2");
  let r = mend("random-gpt2", "--out", modelDir, "--seed", "5");
  assert.equal(r.status, 0, r.stderr);
  for (const kind of ["KE", "ENN"]) {
    r = mend("train-editor", "--model", modelDir, "--kind", kind, "--data", `zsre:${ZSRE}`, "--run-dir", path.join(tmp, kind), "--steps", "1", "--accumulate", "2");
    assert.equal(r.status, 0, r.stderr);
  }
  r = mend("eval", "--model", modelDir, "--data", `counterfact:${CF_ROME_FILE}`, "--methods", "KE,ENN,cache", "--ke", path.join(tmp, "KE", "editor"), "--enn", path.join(tmp, "ENN", "editor"), "--limit", "2", "--out", path.join(tmp, "eval"), "--json");
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.methods.map((m: { name: string }) => m.name), ["KE", "ENN", "cache"]);
  for (const m of out.methods) assert.ok(Number.isFinite(m.scores.efficacy_success) && Number.isFinite(m.scores.neighborhood_magnitude), JSON.stringify(m.scores));
  // the cache answers its own edit prompts: efficacy 1 whatever the random model knew
  assert.equal(out.methods[2].scores.efficacy_success, 1);
  r = mend("eval", "--model", modelDir, "--data", `counterfact:${CF_ROME_FILE}`, "--methods", "KE", "--ke", path.join(tmp, "ENN", "editor"), "--limit", "2", "--out", path.join(tmp, "eval2"));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /not a KE editor folder/);
});
