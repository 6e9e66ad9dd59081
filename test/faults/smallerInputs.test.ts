/**
 * The third sweep's smaller inputs, each now a message naming the file or flag: a folder given as a
 * requests file, a config.json that is not an object, a tensor named like an Object.prototype key,
 * and `mend paper --runs` at a file.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { decodeSafetensors, encodeSafetensors } from "../../dist/model/safetensors";
import { assertFails, assertOk, mend, ROOT, tmp } from "./helpers";

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

test("a saved model whose config.json or vocabulary changed without a manifest is refused, not computed as another model", () => {
  const dir = tmp("companions");
  const saved = path.join(dir, "e1");
  assertOk(mend(["edit", "--prompt", "The president of the United States is", "--target", "Biden", "--save", saved]), "save an edited model");
  fs.rmSync(path.join(saved, "manifest.json"));
  assertOk(mend(["predict", "--model", saved, "--prompt", "The capital of France is"]), "unchanged files load");
  const config = path.join(saved, "config.json");
  const original = fs.readFileSync(config);
  const c = JSON.parse(original.toString());
  fs.writeFileSync(config, JSON.stringify({ ...c, n_head: c.n_head * 2 }, null, 2) + "\n"); // the same shapes, another model
  assertFails(mend(["predict", "--model", saved, "--prompt", "The capital of France is"]), /config\.json: not the config\.json model\.safetensors was saved with \(SHA-256 [0-9a-f]{12} recorded, [0-9a-f]{12} now\)/, "n_head changed");
  fs.writeFileSync(config, original);
  const vocab = path.join(saved, "vocab.json");
  const v = JSON.parse(fs.readFileSync(vocab, "utf8")) as Record<string, number>;
  const [a, b] = ["France", "Paris"];
  [v[a], v[b]] = [v[b], v[a]]; // two token ids swapped
  fs.writeFileSync(vocab, JSON.stringify(v));
  assertFails(mend(["predict", "--model", saved, "--prompt", "The capital of France is"]), /vocab\.json: not the vocab\.json model\.safetensors was saved with/, "two token ids swapped");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("--save --force replaces a folder whose manifest cannot be read; without --force the message says why", () => {
  const dir = tmp("bad-manifest-target");
  const out = path.join(dir, "out");
  fs.cpSync(path.join(ROOT, "checkpoints", "base"), out, { recursive: true });
  fs.writeFileSync(path.join(out, "manifest.json"), "{bad");
  const edit = ["edit", "--prompt", "The president of the United States is", "--target", "Biden", "--save", out];
  assertFails(mend(edit), /refusing to write the model to .*out: it is a folder whose manifest cannot be read \(.*manifest\.json: not valid JSON/, "without --force");
  assertOk(mend([...edit, "--force"]), "with --force");
  assert.equal(JSON.parse(mend(["ledger", "--model", out, "--json"]).stdout).edits.length, 1);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a shard that is a folder is named as such", () => {
  const dir = tmp("shard-folder");
  const g = path.join(dir, "g");
  assertOk(mend(["random-gpt2", "--out", g]), "random-gpt2");
  fs.rmSync(path.join(g, "manifest.json"));
  const file = path.join(g, "model.safetensors");
  const names = Object.keys(decodeSafetensors(fs.readFileSync(file), file).tensors);
  const map = Object.fromEntries(names.map((n, i) => [n, i === 0 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors"]));
  fs.writeFileSync(path.join(g, "model.safetensors.index.json"), JSON.stringify({ weight_map: map }));
  fs.renameSync(file, path.join(g, "model-00001-of-00002.safetensors"));
  fs.mkdirSync(path.join(g, "model-00002-of-00002.safetensors"));
  assertFails(mend(["predict", "--model", g, "--prompt", "The sky is"]), /model-00002-of-00002\.safetensors: a folder, not a safetensors file/, "shard as folder");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("--save and --run-dir on a read-only file system say so (a read-only tmpfs; skipped where mounting is not allowed)", (t) => {
  const dir = tmp("read-only");
  if (spawnSync("mount", ["-t", "tmpfs", "-o", "ro", "tmpfs", dir]).status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    t.skip("mounting a read-only tmpfs is not allowed here");
    return;
  }
  try {
    assertFails(mend(["edit", "--prompt", "The president of the United States is", "--target", "Biden", "--save", path.join(dir, "out")]), /EROFS: the file system is read-only/, "edit --save on a read-only folder");
    assertFails(mend(["train-editor", "--steps", "1", "--run-dir", path.join(dir, "run")]), /cannot create the run folder .*run: ENOENT: .* cannot be written to \(read-only, or no permission\)/, "train-editor --run-dir on a read-only folder");
  } finally {
    spawnSync("umount", [dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
