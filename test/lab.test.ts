/**
 * The MEND lab's session (src/web/lab.ts) in Node, from the shipped folders' bytes: the Biden edit
 * and its panels, a stream undone back to the base model exactly, the refusals that name their
 * reason, and no tensor left behind over repeated edits. Also `mend lab`'s guard on --out.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { buildLab } from "../dist/cli/lab";
import { modelFromFiles } from "../dist/model/modelFolder";
import { labFromFiles } from "../dist/web/lab";
import { ROOT, setup } from "./helpers";

const read = (dir: string) => Object.fromEntries(fs.readdirSync(dir).map((n) => [n, new Uint8Array(fs.readFileSync(path.join(dir, n)))]));
const newLab = () =>
  labFromFiles(read(path.join(ROOT, "checkpoints", "base")), read(path.join(ROOT, "checkpoints", "editor")), JSON.parse(fs.readFileSync(path.join(ROOT, "data", "world.json"), "utf8")), { cacheThreshold: 30 });
const BIDEN = { prompt: "The president of the United States is", target: "Biden" };

test("lab: the Biden edit with MEND, and every panel's data", async () => {
  await setup();
  const lab = newLab();
  try {
    const v = await lab.edit(BIDEN, "MEND");
    assert.equal(v.before[0].token, "Trump");
    assert.equal(v.after[0].token, "Biden");
    assert.equal(v.layers.length, lab.editor.config.innerParams.length);
    assert.ok(v.layers.every((l) => l.relative > 0 && Number.isFinite(l.relative)));
    assert.ok(v.tokens.length > 0 && v.tokens.every((t) => Number.isFinite(t.share)));
    assert.ok(v.probes.some((p) => p.kind === "paraphrase") && v.probes.some((p) => p.kind.startsWith("locality:")));
    assert.deepEqual(v.drift.edited, { relation: "head_of_state", subject: "the United States" });
    assert.ok(Number.isNaN(v.drift.change[v.drift.relations.indexOf("head_of_state")][0]), "the edited fact itself is blank");
    assert.equal(v.stream, null);
  } finally {
    lab.dispose();
  }
});

test("lab: a stream of edits undone one by one ends at the base model exactly; tensors stay flat", async () => {
  await setup();
  const lab = newLab();
  try {
    const base = await lab.streamTop(BIDEN.prompt);
    const warm = await lab.edit(BIDEN, "MEND", "stream"); // first use builds what later edits reuse
    await lab.undo();
    assert.equal(warm.stream!.edits.length, 1);
    const before = tf.memory().numTensors;
    for (let round = 0; round < 2; round++) {
      let v = await lab.edit(BIDEN, "MEND", "stream");
      assert.equal(v.stream!.retention, 1);
      v = await lab.edit({ prompt: "The capital of Kenya is", target: "Lima" }, "FT", "stream");
      assert.deepEqual(v.stream!.edits.map((e) => e.method), ["MEND", "FT"]);
      assert.ok(v.stream!.locality > 0.5 && v.stream!.locality <= 1);
      assert.equal((await lab.undo()).edits.length, 1);
      assert.equal((await lab.undo()).edits.length, 0);
      assert.deepEqual(await lab.streamTop(BIDEN.prompt), base, "after undoing every edit the model is the base model");
    }
    assert.equal(tf.memory().numTensors, before, "no tensor left behind");
    await assert.rejects(() => lab.undo(), /nothing to undo/);
  } finally {
    lab.dispose();
  }
});

test("lab: refusals name their reason (unknown word, AlphaEdit on a preserved fact, the cache in a stream, an unknown method)", async () => {
  await setup();
  const lab = newLab();
  try {
    await assert.rejects(() => lab.edit({ prompt: "The presidnet of the United States is", target: "Biden" }, "MEND"), /unknown word "presidnet" \(did you mean "president"\?\)/);
    await assert.rejects(() => lab.edit({ prompt: "The capital of France is", target: "Rome" }, "AlphaEdit"), /AlphaEdit preserves the answers .* France is one of them/);
    await assert.rejects(() => lab.edit(BIDEN, "cache", "stream"), /the cache keeps no weight update/);
    await assert.rejects(() => lab.edit(BIDEN, "KE"), /unknown method "KE"; the lab offers MEND, /);
    assert.equal((await lab.edit(BIDEN, "cache")).after[0].token, "Biden");
  } finally {
    lab.dispose();
  }
});

test("lab: a model from damaged bytes is an error naming the file", async () => {
  await setup();
  const files = read(path.join(ROOT, "checkpoints", "base"));
  const cut = { ...files, "model.safetensors": files["model.safetensors"].slice(0, files["model.safetensors"].length - 8) };
  assert.throws(() => modelFromFiles(cut, "site/checkpoints/base"), /site\/checkpoints\/base\/model\.safetensors: .*(truncated|ends at byte)/);
  assert.throws(() => modelFromFiles({ ...files, "vocab.json": new TextEncoder().encode("[]") }, "site/checkpoints/base"), /site\/checkpoints\/base\/vocab\.json/);
});

test("mend lab: a folder that is not a built lab is not replaced without --force", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mend-lab-guard-"));
  fs.writeFileSync(path.join(dir, "notes.txt"), "mine");
  await assert.rejects(buildLab(dir), /exists and is not a built lab \(no lab\.json\): choose another --out, or pass --force/);
  assert.equal(fs.readFileSync(path.join(dir, "notes.txt"), "utf8"), "mine");
  fs.rmSync(dir, { recursive: true, force: true });
});
