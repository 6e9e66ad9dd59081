/** A crash in a folder swap never hides a complete checkpoint from a reader: load, predict, edit and resume find it. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { recoverForRead } from "../../dist/model/checkpointFolder";
import { loadModel } from "../../dist/model/modelFolder";
import { assertOk, copyCheckpoint, interruptSwap, mend, tmp } from "./helpers";

test("a writer killed between the two renames: loadModel, predict and edit read the complete folder left aside", () => {
  const dir = tmp("swap");
  const base = copyCheckpoint("base", path.join(dir, "base"));
  const editor = copyCheckpoint("editor", path.join(dir, "editor"));
  interruptSwap(base);
  assert.ok(!fs.existsSync(base), "nothing under the name: the state a kill between the renames leaves");
  const m = loadModel(base);
  assert.ok(fs.existsSync(path.join(base, "model.safetensors")), "put back by the read");
  m.dispose();
  interruptSwap(base);
  assertOk(mend(["predict", "--model", base, "--prompt", "The capital of Peru is", "--json"]), "predict");
  interruptSwap(base);
  interruptSwap(editor);
  const r = mend(["edit", "--model", base, "--editor", editor, "--prompt", "The president of the United States is", "--target", "Biden", "--json"]);
  assertOk(r, "edit");
  assert.equal(JSON.parse(r.stdout).results[0].after.token, "Biden");
  assert.deepEqual(fs.readdirSync(dir).sort(), ["base", "editor"], "no folder left aside");
});

test("a writer killed between the two renames of a run's last checkpoint: --resume continues from it", () => {
  const dir = tmp("resume");
  const run = path.join(dir, "run");
  assertOk(mend(["train-editor", "--run-dir", run, "--out", path.join(dir, "editor"), "--steps", "2", "--rank", "16", "--accumulate", "2"]), "first run");
  const state = JSON.parse(fs.readFileSync(path.join(run, "last", "trainer_state.json"), "utf8"));
  assert.equal(state.step, 2);
  interruptSwap(path.join(run, "last"));
  const r = mend(["train-editor", "--resume", "--run-dir", run, "--steps", "3"]);
  assertOk(r, "resume");
  assert.equal(JSON.parse(r.stdout).steps, 3, "continued from step 2");
});

test("where the folder cannot be put back, the error names the copy and how to restore it", { skip: process.getuid?.() === 0 ? "root writes to read-only folders" : false }, () => {
  const dir = tmp("readonly");
  const base = copyCheckpoint("base", path.join(dir, "base"));
  const aside = interruptSwap(base);
  fs.chmodSync(dir, 0o555);
  try {
    assert.throws(() => recoverForRead(base), new RegExp(`left the complete folder aside as ${aside.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.*restore it with: mv`));
  } finally {
    fs.chmodSync(dir, 0o755);
  }
});
