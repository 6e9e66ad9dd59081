/** Hugging Face GPT-2 folders: generated in the Hub's layout, loaded back, equal to the internal forward. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { decodeSafetensors } from "../dist/model/safetensors";
import { disposeParams, gptForward } from "../dist/model/gpt";
import { loadModel, saveModel } from "../dist/model/modelFolder";
import { hubConfig, randomGpt2, writeRandomGpt2 } from "../dist/model/randomGpt2";
import { makeBatch, disposeBatch } from "../dist/model/batch";
import { maxAbsDiff, setup } from "./helpers";

const tmp = (p: string) => fs.mkdtempSync(path.join(os.tmpdir(), p));
const PROMPTS = [{ prompt: "The president of the United States is", target: " Joe Biden" }, { prompt: "Paris is the capital of", target: " France" }];

/** Logits of `params` on PROMPTS ([B, T, V]; caller disposes). */
function logitsOf(m: { config: ReturnType<typeof hubConfig>; params: Record<string, tf.Tensor>; tokenizer: Parameters<typeof makeBatch>[0] }): tf.Tensor {
  const b = makeBatch(m.tokenizer, PROMPTS, "target", m.config.n_positions);
  const out = tf.tidy(() => gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask }).logits);
  disposeBatch(b);
  return out;
}

test("a generated GPT-2 folder looks like the Hub's and loads back with the same logits as the internal forward", async () => {
  await setup();
  const dir = tmp("gpt2-");
  writeRandomGpt2(dir, { seed: 5 });
  assert.deepEqual(fs.readdirSync(dir).sort(), ["config.json", "manifest.json", "merges.txt", "model.safetensors", "tokenizer.json", "vocab.json"]);
  const header = Object.keys(decodeSafetensors(fs.readFileSync(path.join(dir, "model.safetensors"))).tensors);
  assert.ok(header.includes("h.0.attn.bias"), "the causal-mask buffers are in the file, as on the Hub");
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.equal(cfg.activation_function, "gelu_new");
  assert.equal(cfg.vocab_size, 50257);
  const m = loadModel(dir);
  assert.equal(m.tokenizer.kind, "bpe");
  const ref = randomGpt2({ seed: 5 });
  const a = logitsOf(m as never);
  const b = logitsOf({ ...m, params: ref.params } as never);
  assert.equal(maxAbsDiff(a, b), 0, "F32 weights load bit for bit");
  tf.dispose([a, b]);
  disposeParams(ref.params);
  disposeParams(m.params);
});

test("F16 and BF16 files with the transformer. prefix load (widened) within their precision", async () => {
  await setup();
  const ref = randomGpt2({ seed: 6 });
  const exact = { ...ref, tokenizer: loadModel((() => { const d = tmp("gpt2-"); writeRandomGpt2(d, { seed: 6 }); return d; })()).tokenizer };
  const want = logitsOf(exact as never);
  for (const [dtype, tol] of [["F16", 2e-3], ["BF16", 2e-2]] as const) {
    const dir = tmp(`gpt2-${dtype}-`);
    writeRandomGpt2(dir, { seed: 6, dtype, prefix: true });
    const names = Object.keys(decodeSafetensors(fs.readFileSync(path.join(dir, "model.safetensors"))).tensors);
    assert.ok(names.every((n) => n.startsWith("transformer.")));
    const m = loadModel(dir);
    const got = logitsOf(m as never);
    const diff = maxAbsDiff(got, want);
    assert.ok(diff > 0 && diff < tol, `${dtype}: max |Δlogit| ${diff} should be in (0, ${tol})`);
    // Saving writes F32 and the same tokenizer files; loading that is exact.
    const again = tmp("gpt2-saved-");
    fs.rmSync(again, { recursive: true });
    saveModel(again, m);
    assert.deepEqual(fs.readdirSync(again).sort(), ["config.json", "manifest.json", "model.safetensors", "tokenizer.json"]);
    const m2 = loadModel(again);
    const got2 = logitsOf(m2 as never);
    assert.equal(maxAbsDiff(got2, got), 0);
    tf.dispose([got, got2]);
    disposeParams(m.params);
    disposeParams(m2.params);
  }
  want.dispose();
  disposeParams(ref.params);
  disposeParams(exact.params);
});

test("Hugging Face folders that cannot load say why", async () => {
  await setup();
  const dir = tmp("gpt2-bad-");
  writeRandomGpt2(dir, { seed: 1 });
  fs.rmSync(path.join(dir, "manifest.json")); // as downloaded: no manifest, files may be changed by hand
  const cfgFile = path.join(dir, "config.json");
  const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8"));
  const withConfig = (over: Record<string, unknown>) => fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, ...over }));
  withConfig({ vocab_size: 50000 });
  assert.throws(() => loadModel(dir), /the tokenizer has 50257 tokens but config.json says vocab_size 50000/);
  withConfig({ model_type: "llama" });
  assert.throws(() => loadModel(dir), /model_type must be "gpt2", got "llama"/);
  withConfig({ n_layer: 5 });
  assert.throws(() => loadModel(dir), /missing tensors h\.4\./);
  withConfig({});
  fs.renameSync(path.join(dir, "model.safetensors"), path.join(dir, "pytorch_model.bin"));
  assert.throws(() => loadModel(dir), /model\.safetensors: file not found \(the folder has pytorch_model\.bin; download model\.safetensors/);
  fs.rmSync(path.join(dir, "pytorch_model.bin"));
  for (const f of ["tokenizer.json", "merges.txt", "vocab.json"]) fs.rmSync(path.join(dir, f));
  assert.throws(() => loadModel(dir), /no tokenizer \(expected tokenizer\.json, vocab\.json \+ merges\.txt/);
});
