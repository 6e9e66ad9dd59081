// Loading validates content, and bad input is named: weights, vocabularies, safetensors layout,
// the base model an editor was trained for, text, request lists, divergence.
import test from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { mendEdit, disposeEdit } from "../dist/mend/edit";
import { validateRequests } from "../dist/datasets/editRecord";
import { disposeEditor } from "../dist/mend/editor";
import { loadEditor, saveEditor } from "../dist/mend/editorFolder";
import { DEFAULT_TRAIN_EDITOR_CONFIG, trainEditor } from "../dist/mend/train";
import { disposeParams } from "../dist/model/gpt";
import { loadModel, saveModel } from "../dist/model/modelFolder";
import { decodeSafetensors, encodeSafetensors } from "../dist/model/safetensors";
import { readFolderFiles, verifyFolder, writeFolder } from "../dist/model/checkpointFolder";
import { splitWords, UnknownWordError } from "../dist/model/wordTokenizer";
import { getWorld, leaked, ROOT, setup, tinyModel, warmEditor } from "./helpers";

const tmp = (p: string) => fs.mkdtempSync(path.join(os.tmpdir(), p));

test("a NaN or Inf weight is an error naming the tensor", async () => {
  await setup();
  const m = tinyModel(81);
  const bad = { ...m.params, "h.1.mlp.c_fc.weight": tf.fill(m.params["h.1.mlp.c_fc.weight"].shape, NaN) };
  const dir = tmp("nan-");
  saveModel(dir, { ...m, params: bad });
  assert.throws(() => loadModel(dir), /tensor "h\.1\.mlp\.c_fc\.weight" contains NaN at index 0: the weights are damaged/);
  bad["h.1.mlp.c_fc.weight"].dispose();
  disposeParams(m.params);
});

test("duplicate vocabulary entries are an error, though JSON.parse would merge them", async () => {
  await setup();
  const m = tinyModel(82);
  const dir = tmp("vocab-");
  saveModel(dir, m);
  fs.rmSync(path.join(dir, "manifest.json"));
  const text = fs.readFileSync(path.join(dir, "vocab.json"), "utf8");
  fs.writeFileSync(path.join(dir, "vocab.json"), text.replace('"capital":', '"capital":99999, "capital":'));
  assert.throws(() => loadModel(dir), /vocab\.json: token "capital" appears twice/);
  disposeParams(m.params);
});

test("safetensors with a gap between tensors or trailing bytes are rejected, as Hugging Face's loader does", () => {
  const t = { a: { dtype: "F32" as const, shape: [2], data: new Float32Array([1, 2]) }, b: { dtype: "F32" as const, shape: [1], data: new Float32Array([3]) } };
  const good = encodeSafetensors(t);
  assert.equal(decodeSafetensors(good).tensors.b.data[0], 3);
  assert.throws(() => decodeSafetensors(Buffer.concat([good, Buffer.alloc(4)]), "f"), /f: 4 trailing bytes after the last tensor/);
  const n = Number(good.readBigUInt64LE(0));
  const header = JSON.parse(good.subarray(8, 8 + n).toString());
  header.b.data_offsets = [12, 16]; // a 4-byte gap after a
  const h = Buffer.from(JSON.stringify(header));
  const gapped = Buffer.concat([Buffer.alloc(8), h, Buffer.from(new Float32Array([1, 2, 0, 3]).buffer)]);
  gapped.writeBigUInt64LE(BigInt(h.length), 0);
  assert.throws(() => decodeSafetensors(gapped, "f"), /a gap of 4 bytes before tensor "b"/);
});

test("an editor is refused for a base model other than the one it was trained for, unless told", async () => {
  await setup();
  const m = tinyModel(83);
  const other = tinyModel(84);
  const e = warmEditor(m);
  const dir = tmp("editor-fp-");
  saveEditor(dir, e, m.config, m.params);
  disposeEditor(loadEditor(dir, m.config, m.params));
  assert.throws(() => loadEditor(dir, other.config, other.params), /was trained for the base model with fingerprint [0-9a-f]{12}, but this base model's is [0-9a-f]{12}.*--allow-base-mismatch/);
  disposeEditor(loadEditor(dir, other.config, other.params, undefined, { allowBaseMismatch: true }));
  disposeEditor(e);
  disposeParams(m.params);
  disposeParams(other.params);
});

test("text: NFC, words of any script and emoji reported whole, special tokens refused", async () => {
  await setup();
  assert.deepEqual(splitWords("Who leads Français ? 👍🏽"), ["Who", "leads", "Français", "?", "👍🏽"]);
  assert.deepEqual(splitWords("Franc\u0327ais"), ["Français"], "decomposed ç is normalised to one word");
  assert.deepEqual(splitWords("The capital of Peru is"), ["The", "capital", "of", "Peru", "is"]);
  const m = tinyModel(85);
  assert.throws(() => m.tokenizer.encode("The capital of Français is"), (e: unknown) => e instanceof UnknownWordError && e.unknown.length === 1 && e.unknown[0] === "Français");
  assert.throws(() => m.tokenizer.encode("The capital of 🇫🇷 is"), /unknown word "🇫🇷"/);
  assert.throws(() => m.tokenizer.encode("The capital of Peru is <eos>"), /"<eos>": special tokens cannot appear inside a prompt or target/);
  disposeParams(m.params);
});

test("request lists: two targets for one prompt are an error; the same request twice is not", () => {
  const p = "The capital of Peru is";
  assert.throws(() => validateRequests([{ prompt: p, target: "Lima" }, { prompt: p, target: "Quito" }]), /two targets for "The capital of Peru is": "Lima" and "Quito"/);
  validateRequests([{ prompt: p, target: "Lima" }, { prompt: p, target: "Lima" }]);
});

test("a diverging meta-training run stops with a message that says so and keeps the last good checkpoint", async () => {
  await setup();
  const m = tinyModel(86);
  const w = getWorld();
  const cfg = { ...DEFAULT_TRAIN_EDITOR_CONFIG, maxSteps: 2, accumulate: 2, valEvery: 2, valSize: 4, patience: 1000, editor: { rank: 8 } };
  const fresh = tmp("diverge-");
  await assert.rejects(trainEditor(m, w.editRecords("train"), w.editRecords("val"), fresh, { ...cfg, maxSteps: 60, lr: 1e12, editLrLr: 1e12 }, {}), /meta-training diverged: .*no checkpoint had been written yet\. Lower --lr/);
  // A good run to step 2, then continued with an lr that diverges: its step-2 checkpoint stays.
  const dir = tmp("diverge-");
  await trainEditor(m, w.editRecords("train"), w.editRecords("val"), dir, cfg, {});
  const last = path.join(dir, "last");
  const files = readFolderFiles(last);
  const state = JSON.parse(files["trainer_state.json"].toString());
  state.config = { ...state.config, lr: 1e12, editLrLr: 1e12 };
  writeFolder(last, "editor-run", { ...files, "trainer_state.json": JSON.stringify(state) });
  const before = fs.readFileSync(path.join(last, "trainer_state.json"), "utf8");
  await assert.rejects(
    trainEditor(m, w.editRecords("train"), w.editRecords("val"), dir, cfg, { resume: true, resumeWith: { maxSteps: 60 } }),
    /meta-training diverged: .*the last good checkpoint \(step 2\) is kept in/,
  );
  assert.equal(fs.readFileSync(path.join(last, "trainer_state.json"), "utf8"), before, "the good checkpoint is untouched");
  verifyFolder(last);
  disposeParams(m.params);
});

test("no tensor leaks over 1000 edits", async () => {
  await setup();
  const m = tinyModel(87);
  const e = warmEditor(m);
  const req = [{ prompt: "The capital of Peru is", target: "Lima" }];
  disposeEdit(mendEdit(m, e, req)); // warm-up (cached σ, weight norms)
  assert.equal(await leaked(() => { for (let i = 0; i < 1000; i++) disposeEdit(mendEdit(m, e, req)); }), 0);
  disposeEditor(e);
  disposeParams(m.params);
  assert.ok(fs.existsSync(ROOT));
});

test("using a disposed model or editor is an error that says so", async () => {
  await setup();
  const m = tinyModel(88);
  const e = warmEditor(m);
  const req = [{ prompt: "The capital of Peru is", target: "Lima" }];
  disposeEditor(e);
  assert.throws(() => mendEdit(m, e, req), /this editor was disposed \(disposeEditor\): load the editor again/);
  const m2 = tinyModel(88);
  const e2 = warmEditor(m2);
  disposeParams(m.params);
  assert.throws(() => mendEdit(m, e2, req), /parameter "[^"]+" was disposed: this model \(or edit\) has been freed/);
  disposeEditor(e2);
  disposeParams(m2.params);
});
