/**
 * The third sweep's smaller inputs, each now a message naming the file or flag: a folder given as a
 * requests file, a config.json that is not an object, a tensor named like an Object.prototype key,
 * and `mend paper --runs` at a file.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { decodeSafetensors, encodeSafetensors } from "../../dist/model/safetensors";
import { assertFails, mend, ROOT, tmp } from "./helpers";

/** A copy of the shipped base model without its manifest (so a changed file is read, not refused by the manifest). */
function baseCopy(dir: string): string {
  const to = path.join(dir, "base");
  fs.cpSync(path.join(ROOT, "checkpoints", "base"), to, { recursive: true });
  fs.rmSync(path.join(to, "manifest.json"));
  return to;
}

test("--requests naming a folder says it is a folder", () => {
  const dir = tmp("requests-folder");
  assertFails(mend(["edit", "--requests", dir]), new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: a folder, not a JSON file`), "edit --requests FOLDER");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a config.json that is a list is 'not an object', not a missing vocab_size", () => {
  const dir = tmp("config-list");
  const model = baseCopy(dir);
  fs.writeFileSync(path.join(model, "config.json"), "[]");
  assertFails(mend(["predict", "--model", model, "--prompt", "The capital of France is"]), /config\.json: not an object of GPT-2 settings/, "predict with config.json = []");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("tensors named constructor or toString are unexpected tensors, not 'appears twice'", () => {
  const dir = tmp("proto-tensors");
  const model = baseCopy(dir);
  const file = path.join(model, "model.safetensors");
  const { tensors } = decodeSafetensors(fs.readFileSync(file), file);
  for (const name of ["constructor", "toString"]) {
    fs.writeFileSync(file, encodeSafetensors({ ...tensors, [name]: { dtype: "F32", shape: [1], data: new Float32Array([1]) } }));
    const r = mend(["predict", "--model", model, "--prompt", "The capital of France is"]);
    assertFails(r, new RegExp(`unexpected tensor ${name} \\(not part of a GPT-2 with this config\\.json\\)`), `a tensor named ${name}`);
    assert.doesNotMatch(r.stderr, /appears twice/);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("mend paper --runs at a file says so", () => {
  const dir = tmp("paper-runs-file");
  const file = path.join(dir, "runs.txt");
  fs.writeFileSync(file, "x");
  assertFails(mend(["paper", "--runs", file]), /--runs .*runs\.txt: a file, not a folder for the training runs/, "paper --runs FILE");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("mend lifelong --methods offers only what a stream can run (KE, ENN, MEND-batch and the cache need what it has no flag for)", () => {
  for (const m of ["KE", "ENN", "MEND-batch", "cache"]) {
    assertFails(mend(["lifelong", "--methods", m, "--edits", "1"]), new RegExp(`--methods: unknown "${m}"; choose from MEND, MEND-cal, FT, FT\\+KL, UltraEdit, AlphaEdit, LocFT-BF`), `lifelong --methods ${m}`);
  }
});

test("train-editor --inner-params naming a weight the model lacks says so, with the model's blocks", () => {
  const dir = tmp("inner-missing");
  assertFails(mend(["train-editor", "--inner-params", "h.9.mlp.c_fc.weight", "--steps", "1", "--run-dir", path.join(dir, "r")]), /inner parameter "h\.9\.mlp\.c_fc\.weight" is not a weight of the base model \(its blocks are h\.0 to h\.3\)/, "train-editor --inner-params h.9");
  fs.rmSync(dir, { recursive: true, force: true });
});
