/** zsRE and CounterFact: the excerpts in data/ become edit records; bad files say where. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { counterfactRecords } from "../dist/datasets/counterfact";
import { counterfactScore } from "../dist/eval/counterfactMetrics";
import { loadDataset, parseDataSpec, splitRecords } from "../dist/datasets/records";
import { zsreRecords } from "../dist/datasets/zsre";
import { CF_EASYEDIT_FILE, CF_ROME_FILE, ZSRE_FILE } from "./helpers";

const ZSRE = ZSRE_FILE;
const CF_ROME = CF_ROME_FILE;
const CF_EASYEDIT = CF_EASYEDIT_FILE;

test("zsRE (EasyEdit JSON): x_e = src, x'_e = rephrase, y_e = alt, NQ locality; the record without an alt is skipped", () => {
  const ds = loadDataset("zsre", ZSRE);
  assert.equal(ds.records.length, 799);
  assert.deepEqual(ds.skipped, [{ index: 426, reason: 'empty "alt" (no edit target)' }]);
  const r = ds.records[0];
  assert.deepEqual(r.prompts, ["What is the product made by UniFirst?", "What will be the product of UniFirst?"]);
  assert.equal(r.target_new, "unmanned aircraft");
  assert.equal(r.target_true, "uniform");
  assert.equal(r.locality[0].prompt, "nq question: john goodman's character in the big lebowski");
  assert.equal(r.locality[0].target, "Walter Sobchak");
  assert.ok(ds.records.every((x) => x.locality[0].prompt.startsWith("nq question: ")));
});

test("CounterFact: ROME's records (subject filled in, 2 paraphrases, 10 neighbours with the true answer) and EasyEdit's", () => {
  const rome = loadDataset("counterfact", CF_ROME);
  assert.equal(rome.records.length, 200);
  const r = rome.records[0];
  assert.equal(r.prompts[0], "The mother tongue of Danielle Darrieux is");
  assert.equal(r.target_new, "English");
  assert.equal(r.target_true, "French");
  assert.equal(r.heldout_prompts.length, 2);
  assert.equal(r.locality.length, 10);
  assert.ok(r.locality.every((l) => l.target === "French"));
  const ee = loadDataset("counterfact", CF_EASYEDIT);
  assert.equal(ee.records.length, 1919);
  assert.deepEqual(ee.records[0].prompts, ["BBC One, by", "BBC One is my favorite product out of everything owned by"]);
  assert.equal(ee.records[0].target_new, "Sega");
  assert.equal(ee.records[0].case_id, 10);
});

test("dataset errors name the file, the record and the field", () => {
  assert.throws(() => zsreRecords({ a: 1 }, "z.json"), /z\.json: expected a JSON list of records, got object/);
  assert.throws(() => zsreRecords([], "z.json"), /the list of records is empty/);
  assert.throws(() => zsreRecords([{ src: "q?", rephrase: "r?", alt: "x", answers: ["y"], loc: "nq question: a" }], "z.json"), /z\.json: record 0: field "loc_ans" must be a non-empty string \(it is missing\)/);
  assert.throws(() => zsreRecords([{ src: "q?", rephrase: "r?", alt: "x", answers: "y", loc: "l", loc_ans: "a" }], "z.json"), /field "answers" must be a list of strings/);
  const rw = { prompt: "{} speaks", subject: "S", target_new: { str: "English" }, target_true: { str: "French" } };
  assert.throws(() => counterfactRecords([{ requested_rewrite: { ...rw, prompt: "speaks" }, paraphrase_prompts: ["p"], neighborhood_prompts: ["n"] }], "c.json"), /requested_rewrite\.prompt must hold "\{\}" exactly once for the subject .*found 0/);
  assert.throws(() => counterfactRecords([{ requested_rewrite: { ...rw, target_new: {} }, paraphrase_prompts: ["p"], neighborhood_prompts: ["n"] }], "c.json"), /c\.json: record 0 \(case_id 0\): requested_rewrite\.target_new: field "str" must be a non-empty string/);
  assert.throws(() => counterfactRecords([{ requested_rewrite: rw, paraphrase_prompts: [], neighborhood_prompts: ["n"] }], "c.json"), /paraphrase_prompts and neighborhood_prompts must not be empty/);
  assert.throws(() => parseDataSpec("squad:x.json"), /expected zsre:FILE or counterfact:FILE/);
  assert.throws(() => loadDataset("zsre", "/nonexistent.json"), /\/nonexistent\.json: file not found/);
  const bad = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "ds-")), "bad.json");
  fs.writeFileSync(bad, "[{");
  assert.throws(() => loadDataset("zsre", bad), /bad\.json: not valid JSON/);
});

test("meta-training split: the last records validate (at most a tenth), in file order", () => {
  const { records } = loadDataset("zsre", ZSRE);
  const { train, val } = splitRecords(records, 80);
  assert.equal(val.length, 79);
  assert.equal(train.length, 720);
  assert.equal(val[0].prompts[0], records[720].prompts[0]);
  assert.ok(train.every((r) => r.split === "train") && val.every((r) => r.split === "val"));
  assert.throws(() => splitRecords(records.slice(0, 1), 80), /at least 2 records/);
});

test("CounterFact's score S is the harmonic mean of ES, PS and NS", () => {
  assert.ok(Math.abs(counterfactScore({ efficacy_success: 1, paraphrase_success: 0.5, neighborhood_success: 0.25 }) - 3 / (1 + 2 + 4)) < 1e-12);
  assert.equal(counterfactScore({ efficacy_success: 1, paraphrase_success: 0, neighborhood_success: 1 }), 0);
});
