import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import * as path from "path";
import { DEFAULT_EVAL_CONFIG, evaluateMethods, perplexityText } from "../dist/eval/evaluate";
import { disposeMethodEdit, EditMethod, paramsOf } from "../dist/eval/methods";
import { withWeights } from "../dist/model/paramsModel";
import { corpusNll } from "../dist/model/score";
import { disposeParams } from "../dist/model/gpt";
import { loadModel } from "../dist/model/modelFolder";
import { getWorld, ROOT, setup } from "./helpers";

// A stand-in edit method that makes the edited fact's old answer unpredictable everywhere (its
// output embedding row zeroed): it breaks exactly the probes answered by that token.
function forgetting(oldAnswer: ReadonlyMap<string, string>): EditMethod {
  return {
    name: "forget-old-answer",
    edit(model, requests) {
      const m = paramsOf(model, "forget");
      const id = m.tokenizer.encode(oldAnswer.get(requests[0].prompt)!)[0];
      const wte = tf.tidy(() => tf.mul(m.params["wte.weight"], tf.sub(1, tf.oneHot(id, m.config.vocab_size).expandDims(1))));
      return { model: withWeights(m, { "wte.weight": wte }), latencyMs: 0 };
    },
  };
}

test("drift heatmap: row i is the edit of labels[i], so each row's largest drop is on its own column", async () => {
  await setup();
  const model = loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = getWorld();
  const records = world.editRecords("val").filter((r, i, all) => all.findIndex((x) => x.subject === r.subject && x.relation === r.relation) === i).slice(0, 8);
  const sorted = [...records].sort((a, b) => a.relation.localeCompare(b.relation) || a.subject.localeCompare(b.subject));
  assert.ok(sorted.some((r, i) => r !== records[i]), "the heatmap's sorted order differs from the evaluation order");
  const forget = forgetting(new Map(records.map((r) => [r.prompts[0], r.target_true])));
  const r = evaluateMethods(model, world, [forget], records, { ...DEFAULT_EVAL_CONFIG, batchSizes: [], sequential: 0, heatmapEdits: records.length, pplSentences: 2 });
  const h = r.heatmap[forget.name];
  assert.deepEqual(h.labels, sorted.map((x) => `${x.subject} / ${x.relation}`));
  h.dp.forEach((row, i) => {
    assert.ok(row[i] < -0.5, `${h.labels[i]}: editing it drops its own answer (${row[i]})`);
    assert.ok(row.every((x) => x >= row[i] - 1e-6), `${h.labels[i]}: the largest drop is on the diagonal (${row.map((x) => x.toFixed(2)).join(", ")})`);
  });
  disposeParams(model.params);
});

test("perplexity drawdown is the official one: the perplexity of the pooled NLL over all edits, minus the perplexity before", async () => {
  await setup();
  const model = loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = getWorld();
  const records = world.editRecords("val").slice(0, 3);
  // A stand-in edit that sharpens or flattens the output distribution by a factor per edit, so the
  // edits' perplexities differ widely (the two definitions then differ by Jensen's inequality).
  const factor = new Map(records.map((r, i) => [r.prompts[0], [0.2, 1.5, 3][i]]));
  const forget: EditMethod = {
    name: "temperature",
    edit(model, requests) {
      const m = paramsOf(model, "temperature");
      const ln = tf.mul(m.params["ln_f.weight"], factor.get(requests[0].prompt)!);
      return { model: withWeights(m, { "ln_f.weight": ln }), latencyMs: 0 };
    },
  };
  const cfg = { ...DEFAULT_EVAL_CONFIG, batchSizes: [], sequential: 0, heatmapEdits: 0, pplSentences: 16 };
  const r = evaluateMethods(model, world, [forget], records, cfg);
  const text = perplexityText(world, cfg.pplSentences);
  const before = corpusNll(model, text);
  let nll = 0;
  let tokens = 0;
  const perEdit: number[] = [];
  for (const rec of records) {
    const e = forget.edit(model, [{ prompt: rec.prompts[0], target: rec.target_new }]);
    const after = corpusNll(e.model, text);
    nll += after.nll;
    tokens += after.tokens;
    perEdit.push(Math.exp(after.nll / after.tokens));
    disposeMethodEdit(e);
  }
  const official = Math.exp(nll / tokens) - Math.exp(before.nll / before.tokens);
  const meanOfPerplexities = perEdit.reduce((a, x) => a + x, 0) / perEdit.length - Math.exp(before.nll / before.tokens);
  assert.ok(Math.abs(official - meanOfPerplexities) > 1e-3, "the two definitions differ on these edits");
  assert.ok(Math.abs(r.methods[forget.name].ppl_dd - official) < 1e-6 * Math.max(1, Math.abs(official)), `ppl_dd ${r.methods[forget.name].ppl_dd} vs ${official}`);
  disposeParams(model.params);
});

// The "same relation, same answer" locality group must isolate the probes the forgotten token answers.
test("locality per class, with the same-relation probes that share the edited fact's old answer", async () => {
  await setup();
  const model = loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = getWorld();
  const records = world.editRecords("val").slice(0, 24);
  const forget = forgetting(new Map(records.map((r) => [r.prompts[0], r.target_true])));
  const noop: EditMethod = { name: "noop", edit: (m) => ({ model: withWeights(paramsOf(m, "noop"), {}), latencyMs: 0 }) };
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
  const recorder: EditMethod = { name: "recorder", edit: (m, requests) => (calls.push(requests.map((q) => q.prompt)), { model: withWeights(paramsOf(m, "recorder"), {}), latencyMs: 0 }) };
  const cfg = { ...DEFAULT_EVAL_CONFIG, batchSizes: [5], maxBatches: 3, sequential: 0, heatmapEdits: 0, pplSentences: 2 };
  const r = evaluateMethods(model, world, [recorder], records, cfg);
  const batched = calls.filter((c) => c.length === 5);
  assert.equal(batched.length, 3);
  assert.equal(r.batched.recorder[0].n_batches, 3);
  for (const c of batched) assert.equal(new Set(c).size, 5, `one call edits a fact twice: ${c.join(" | ")}`);
  disposeParams(model.params);
});
