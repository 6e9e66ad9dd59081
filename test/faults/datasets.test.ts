/** Dataset text is filled in literally, and a record that breaks a rule is refused with its file and index. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { counterfactRecords } from "../../dist/datasets/counterfact";
import { checkRecordsTokenize, loadDataset } from "../../dist/datasets/records";
import { BpeTokenizer, gpt2TokenizerFiles } from "../../dist/model/bpeTokenizer";
import { loadModel } from "../../dist/model/modelFolder";
import { assertFails, mend, ROOT, tmp } from "./helpers";

const rome = (subject: string, prompt: string) => ({
  case_id: 7,
  requested_rewrite: { prompt, subject, relation_id: "P103", target_new: { str: "English" }, target_true: { str: "French" } },
  paraphrase_prompts: ["p1", "p2"],
  neighborhood_prompts: ["n1"],
});

test("a CounterFact subject with $ patterns is filled in literally; a template needs exactly one {}", () => {
  const { records } = counterfactRecords([rome("AT$&T $' $` $$", "The mother tongue of {} is")], "cf.json");
  assert.equal(records[0].prompts[0], "The mother tongue of AT$&T $' $` $$ is");
  assert.throws(() => counterfactRecords([rome("X", "The {} of {} is")], "cf.json"), /cf\.json: record 0 \(case_id 7\): requested_rewrite\.prompt must hold "\{\}" exactly once .*found 2/);
  assert.throws(() => counterfactRecords([rome("X", "No hole here")], "cf.json"), /record 0 \(case_id 7\).*found 0/);
});

test("a dataset record with a special token is refused with its file and record; datasets need a BPE model", () => {
  const dir = tmp("cf-special");
  const file = path.join(dir, "cf.json");
  fs.writeFileSync(file, JSON.stringify([rome("Paris", "The mother tongue of {} is"), rome("Bad<|endoftext|>", "The mother tongue of {} is")]));
  const ds = loadDataset("counterfact", file);
  const files = gpt2TokenizerFiles();
  const bpe = BpeTokenizer.fromFiles(files["vocab.json"], files["merges.txt"]);
  assert.throws(() => checkRecordsTokenize(ds, bpe), new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: record with case_id 7: "<\\|endoftext\\|>": special tokens`));
  const base = loadModel(path.join(ROOT, "checkpoints", "base"));
  assert.throws(() => checkRecordsTokenize(ds, base.tokenizer), /needs a GPT-2 with its BPE tokenizer/);
  base.dispose();
  assertFails(mend(["train-editor", "--data", `zsre:${path.join(ROOT, "data", "zsre", "zsre_mend_train-800.json")}`, "--run-dir", path.join(dir, "run"), "--steps", "1"]), /needs a GPT-2 with its BPE tokenizer/, "train-editor --data on the facts-world model");
});

test("JSON inputs may start with a UTF-8 byte-order mark", () => {
  const dir = tmp("bom");
  const file = path.join(dir, "cf.json");
  fs.writeFileSync(file, "\ufeff" + JSON.stringify([rome("Paris", "The mother tongue of {} is")]));
  assert.equal(loadDataset("counterfact", file).records.length, 1);
  const reqs = path.join(dir, "edits.json");
  fs.writeFileSync(reqs, "\ufeff" + JSON.stringify([{ prompt: "The capital of Peru is", target: "Santiago" }]));
  const r = mend(["edit", "--requests", reqs, "--json"]);
  assert.equal(r.status, 0, r.stderr);
});
