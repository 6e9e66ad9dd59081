import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import * as path from "path";
import { DEFAULT_EVAL_CONFIG, evaluateMethods } from "../dist/eval/evaluate";
import { EditMethod } from "../dist/eval/methods";
import { disposeParams } from "../dist/model/gpt";
import { loadModel } from "../dist/model/modelFolder";
import { getWorld, ROOT, setup } from "./helpers";

// A stand-in edit method that makes the edited fact's old answer unpredictable everywhere (its
// output embedding row zeroed): it breaks exactly the probes answered by that token, which the
// "same relation, same answer" locality group must isolate.
test("locality per class, with the same-relation probes that share the edited fact's old answer", async () => {
  await setup();
  const model = loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = getWorld();
  const records = world.editRecords("val").slice(0, 24);
  const oldAnswer = new Map(records.map((r) => [r.prompts[0], r.target_true]));
  const forget: EditMethod = {
    name: "forget-old-answer",
    edit(m, requests) {
      const id = m.tokenizer.encode(oldAnswer.get(requests[0].prompt)!)[0];
      const wte = tf.tidy(() => tf.mul(m.params["wte.weight"], tf.sub(1, tf.oneHot(id, m.config.vocab_size).expandDims(1))));
      return { params: { ...m.params, "wte.weight": wte }, edited: { "wte.weight": wte }, latencyMs: 0 };
    },
  };
  const noop: EditMethod = { name: "noop", edit: (m) => ({ params: m.params, edited: {}, latencyMs: 0 }) };
  const cfg = { ...DEFAULT_EVAL_CONFIG, batchSizes: [], sequential: 0, heatmapEdits: 2, pplSentences: 4 };
  const r = evaluateMethods(model, world, [noop, forget], records, cfg);
  const n = records.flatMap((x) => x.locality.filter((l) => l.class === "same_relation" && l.target === x.target_true)).length;
  assert.ok(n > 0, "the records have same-answer probes");
  for (const [k, v] of Object.entries(r.methods.noop.locality)) assert.equal(v, 1, `noop: ${k}`);
  const f = r.methods["forget-old-answer"].locality;
  assert.equal(f.same_relation_same_answer, 0, "every probe answered by the forgotten token breaks");
  assert.ok(f.same_relation < 1 && f.same_relation > f.same_relation_same_answer, `same relation ${f.same_relation}`);
  assert.equal(f.unrelated, 1);
  disposeParams(model.params);
});

test("batched edits: every call edits k distinct facts, though the split holds several targets per fact", async () => {
  await setup();
  const model = loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = getWorld();
  const records = world.editRecords("val").slice(0, 30);
  assert.ok(new Set(records.map((r) => r.prompts[0])).size < records.length, "the records edit some facts twice");
  const calls: string[][] = [];
  const recorder: EditMethod = { name: "recorder", edit: (m, requests) => (calls.push(requests.map((q) => q.prompt)), { params: m.params, edited: {}, latencyMs: 0 }) };
  const cfg = { ...DEFAULT_EVAL_CONFIG, batchSizes: [5], maxBatches: 3, sequential: 0, heatmapEdits: 0, pplSentences: 2 };
  const r = evaluateMethods(model, world, [recorder], records, cfg);
  const batched = calls.filter((c) => c.length === 5);
  assert.equal(batched.length, 3);
  assert.equal(r.batched.recorder[0].n_batches, 3);
  for (const c of batched) assert.equal(new Set(c).size, 5, `one call edits a fact twice: ${c.join(" | ")}`);
  disposeParams(model.params);
});
