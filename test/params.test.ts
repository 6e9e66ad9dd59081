import test from "node:test";
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { disposeParams } from "../dist/model/gpt";
import { GPT2Config, validateConfig } from "../dist/model/config";
import { loadModel, paramsFromRaw, saveModel, toRaw } from "../dist/model/modelFolder";
import { maxAbsDiff, setup, tinyModel } from "./helpers";

test("model folder save/load round trip", async () => {
  await setup();
  const m = tinyModel(7);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "model-"));
  saveModel(dir, m);
  assert.deepEqual(fs.readdirSync(dir).sort(), ["config.json", "manifest.json", "model.safetensors", "vocab.json"]);
  const back = loadModel(dir);
  assert.deepEqual(back.config.n_embd, m.config.n_embd);
  assert.deepEqual(back.tokenizer.files(), m.tokenizer.files());
  for (const n of Object.keys(m.params)) assert.equal(maxAbsDiff(back.params[n], m.params[n]), 0, n);
  disposeParams(back.params);
  disposeParams(m.params);
});

test("loading accepts the transformer. prefix and ignores lm_head", async () => {
  await setup();
  const m = tinyModel(8);
  const raw = toRaw(m.params);
  const prefixed = Object.fromEntries(Object.entries(raw).map(([k, v]) => [`transformer.${k}`, v]));
  prefixed["lm_head.weight"] = raw["wte.weight"];
  const p = paramsFromRaw(prefixed, m.config, "x");
  assert.equal(Object.keys(p).length, Object.keys(m.params).length);
  disposeParams(p);
  disposeParams(m.params);
});

test("bad model folders raise errors that name the problem", async () => {
  await setup();
  const m = tinyModel(9);
  const raw = toRaw(m.params);
  const { ["h.0.ln_1.bias"]: _drop, ...missing } = raw;
  assert.throws(() => paramsFromRaw(missing, m.config, "f"), /missing tensor h\.0\.ln_1\.bias/);
  assert.throws(() => paramsFromRaw({ ...raw, "h.7.mlp.c_fc.weight": raw["h.0.mlp.c_fc.weight"] }, m.config, "f"), /unexpected tensor h\.7\.mlp\.c_fc\.weight/);
  assert.throws(() => paramsFromRaw({ ...raw, "h.0.mlp.c_fc.weight": raw["h.0.mlp.c_proj.weight"] }, m.config, "f"), /has shape \[64,16\], expected \[16,64\]/);
  assert.throws(() => paramsFromRaw({ ...raw, "wpe.weight": { ...raw["wpe.weight"], dtype: "I32", data: new Int32Array(raw["wpe.weight"].data.length) } }, m.config, "f"), /dtype I32/);
  assert.throws(() => loadModel("/nonexistent/model"), /model folder "\/nonexistent\/model" not found/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "model-"));
  saveModel(dir, m);
  fs.rmSync(path.join(dir, "manifest.json")); // a folder written by another tool: its content is what is checked
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, vocab_size: cfg.vocab_size + 1 }));
  assert.throws(() => loadModel(dir), /the tokenizer has \d+ tokens but config\.json says vocab_size/);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, n_embd: 15 }));
  assert.throws(() => loadModel(dir), /n_embd \(15\) is not divisible by n_head/);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(cfg));
  const st = path.join(dir, "model.safetensors");
  fs.writeFileSync(st, fs.readFileSync(st).subarray(0, 1000));
  assert.throws(() => loadModel(dir), /truncated/);
  disposeParams(m.params);
});

test("Hugging Face checks: an untied lm_head, another activation, an untied config or another attention variant are errors", async () => {
  await setup();
  const m = tinyModel(9);
  const raw = toRaw(m.params);
  const other = { ...raw["wte.weight"], data: Float32Array.from(raw["wte.weight"].data, (x) => x + 1) };
  assert.throws(() => paramsFromRaw({ ...raw, "lm_head.weight": other }, m.config, "f"), /lm_head\.weight differs from wte\.weight/);
  assert.throws(() => validateConfig({ ...m.config, activation_function: "relu" } as GPT2Config), /activation_function "relu" is not supported/);
  assert.throws(() => validateConfig({ ...m.config, tie_word_embeddings: false } as GPT2Config), /tie_word_embeddings is false/);
  assert.throws(() => validateConfig({ ...m.config, scale_attn_weights: false } as GPT2Config), /scale_attn_weights is false/);
  assert.throws(() => validateConfig({ ...m.config, scale_attn_by_inverse_layer_idx: true } as GPT2Config), /scale_attn_by_inverse_layer_idx is true/);
  assert.throws(() => validateConfig({ ...m.config, reorder_and_upcast_attn: true } as GPT2Config), /reorder_and_upcast_attn is true/);
  assert.throws(() => validateConfig({ ...m.config, add_cross_attention: true } as GPT2Config), /add_cross_attention is true/);
  validateConfig({ ...m.config, activation_function: "gelu_new", n_inner: null, scale_attn_weights: true, scale_attn_by_inverse_layer_idx: false, reorder_and_upcast_attn: false } as unknown as GPT2Config);
  disposeParams(m.params);
});

test("the base-model fingerprint is computed once per set of tensors (not on every editor save), and again for Variables", async () => {
  await setup();
  const { paramsFingerprint } = await import("../dist/model/gpt");
  const m = tinyModel(10);
  const w = m.params["wte.weight"];
  let reads = 0;
  const orig = w.dataSync.bind(w);
  (w as unknown as { dataSync: () => unknown }).dataSync = () => (reads++, orig());
  const fp = paramsFingerprint(m.params);
  assert.equal(reads, 1);
  assert.equal(paramsFingerprint({ ...m.params }), fp, "the same tensors in another record");
  assert.equal(reads, 1, "not read again");
  const v = tf.variable(m.params["ln_f.weight"]);
  const withVar = { ...m.params, "ln_f.weight": v };
  const a = paramsFingerprint(withVar);
  v.assign(tf.tidy(() => tf.add(v, 1)));
  assert.notEqual(paramsFingerprint(withVar), a, "a Variable's new values give a new fingerprint");
  v.dispose();
  disposeParams(m.params);
});
