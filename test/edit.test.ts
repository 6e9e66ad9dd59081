import test from "node:test";
import { extendEditor } from "../dist/extensions/editorExtensions";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { disposeEdit, exampleMask, lowRankEdits, mendEdit } from "../dist/mend/edit";
import { createEditor, disposeEditor } from "../dist/mend/editor";
import { loadEditor, saveEditor } from "../dist/mend/editorFolder";
import { captureFactors, disposeFactors } from "../dist/mend/factor";
import { disposeParams, gptForward } from "../dist/model/gpt";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { applied, leaked, maxAbsDiff, setup, tinyModel, warmEditor } from "./helpers";
import { applyUpdates, ParamsModel } from "../dist/model/paramsModel";
import type { EditResult } from "../dist/mend/edit";
import { updatedWeights } from "../dist/model/weightUpdate";
import { captureEditorFactors, editedWeights } from "../dist/mend/edit";

const req = { prompt: "The president of the United States is", target: "Biden" };

test("an edit returns its update; the edited model replaces only the edited weights, the base untouched", async () => {
  await setup();
  const m = tinyModel(21);
  const e = warmEditor(m);
  const before = m.params["h.1.mlp.c_fc.weight"].arraySync();
  const r = mendEdit(m, e, [req]);
  assert.deepEqual(Object.keys(r.update).sort(), [...e.config.innerParams].sort());
  const edited = applied(m, r);
  for (const n of Object.keys(m.params)) {
    if (r.update[n]) assert.notEqual(edited.params[n], m.params[n]);
    else assert.equal(edited.params[n], m.params[n], `${n} is shared`);
  }
  edited.dispose();
  assert.deepEqual(m.params["h.1.mlp.c_fc.weight"].arraySync(), before, "base not mutated");
  assert.ok(r.info.layers.every((l) => l.updateNorm > 0));
  // <bos> + 7 prompt words feed h.0; only the labelled position feeds the last block.
  assert.deepEqual(r.info.layers.map((l) => l.rows), [8, 8, 1, 1]);
  disposeEdit(r);
  disposeEditor(e);
  disposeParams(m.params);
});

test("alpha = 0 leaves every logit unchanged", async () => {
  await setup();
  const m = tinyModel(22);
  const e = warmEditor(m);
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(0));
  const r = mendEdit(m, e, [req]);
  const edited = applied(m, r);
  const b = makeBatch(m.tokenizer, [{ prompt: "The capital of Peru is", target: "Lima" }, req], "target", m.config.n_positions);
  tf.tidy(() => {
    const a = gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask }).logits;
    const c = gptForward(edited.params, m.config, b.inputIds, { attentionMask: b.attentionMask }).logits;
    assert.equal(maxAbsDiff(a, c), 0);
  });
  disposeBatch(b);
  edited.dispose();
  disposeEdit(r);
  disposeEditor(e);
  disposeParams(m.params);
});

test("batched edits (k requests in one call) and sequential edits work", async () => {
  await setup();
  const m = tinyModel(23);
  const e = warmEditor(m);
  const r1 = mendEdit(m, e, [req, { prompt: "The capital of Peru is", target: "Santiago" }]);
  assert.deepEqual(r1.info.layers.map((l) => l.rows), [8 + 6, 8 + 6, 2, 2]);
  const m1 = applied(m, r1);
  const r2 = mendEdit(m1, e, [{ prompt: "The president of France is", target: "Merkel" }]);
  const m2 = applied(m1, r2);
  assert.notEqual(m2.params["h.1.mlp.c_fc.weight"], m1.params["h.1.mlp.c_fc.weight"]);
  // The model after both edits is W0 + ΔW1 + ΔW2, however it is formed.
  const all = applyUpdates(m, [r1.update, r2.update]);
  for (const n of e.config.innerParams) assert.equal(maxAbsDiff(all.params[n], m2.params[n]), 0, n);
  [m1, m2, all].forEach((x) => x.dispose());
  disposeEdit(r1);
  disposeEdit(r2);
  disposeEditor(e);
  disposeParams(m.params);
});

test("batchLoss 'sum': a k-request edit is exactly the sum of the k single edits; 'mean' (official) is not", async () => {
  await setup();
  const m = tinyModel(24);
  const reqs = [req, { prompt: "The capital of Peru is", target: "Santiago" }];
  for (const batchLoss of ["sum", "mean"] as const) {
    const e = warmEditor(m);
    extendEditor(e, batchLoss === "sum" ? { batchLoss } : {});
    const both = mendEdit(m, e, reqs);
    const singles = reqs.map((r) => mendEdit(m, e, [r]));
    const bothW = updatedWeights(m.params, [both.update]);
    const summedW = updatedWeights(m.params, singles.map((s) => s.update));
    for (const n of e.config.innerParams) {
      const summed = summedW[n];
      const scale = tf.tidy(() => tf.max(tf.abs(tf.sub(bothW[n], m.params[n]))).dataSync()[0]);
      const d = maxAbsDiff(bothW[n], summed);
      if (batchLoss === "sum") assert.ok(d <= 1e-4 * scale + 1e-7, `${n}: ${d} vs update scale ${scale}`);
      else assert.ok(d > 1e-2 * scale, `${n}: the official token-mean loss scales each request's δ by 1/k`);
    }
    tf.dispose([...Object.values(bothW), ...Object.values(summedW)]);
    [both, ...singles].forEach(disposeEdit);
    disposeEditor(e);
  }
  disposeParams(m.params);
});

test("no tensor leak over 100 edits", async () => {
  await setup();
  const m = tinyModel(24);
  const e = warmEditor(m);
  disposeEdit(mendEdit(m, e, [req]));
  const n = await leaked(() => {
    for (let i = 0; i < 100; i++) disposeEdit(mendEdit(m, e, [req]));
  });
  assert.equal(n, 0);
  disposeEditor(e);
  disposeParams(m.params);
});

test("bad edit inputs are clear errors", async () => {
  await setup();
  const m = tinyModel(25, { n_positions: 10 });
  const e = warmEditor(m);
  assert.throws(() => mendEdit(m, e, [{ prompt: "The president of Narnia is", target: "Biden" }]), /unknown word "Narnia"/);
  assert.throws(() => mendEdit(m, e, [{ prompt: "The president of France is", target: "  " }]), /target is empty/);
  assert.throws(() => mendEdit(m, e, []), /no edit requests/);
  assert.throws(() => mendEdit(m, e, [{ prompt: "Which party does Trump belong to ? Answer : the", target: "Republican Party" }]), /longer than the model's context of 10/);
  const fresh = createEditor({ ...e.config }, Object.fromEntries(e.config.innerParams.map((n) => [n, m.params[n].shape])), 1);
  assert.throws(() => mendEdit(m, fresh, [req]), /at least 2 are needed/);
  disposeEditor(fresh);
  disposeEditor(e);
  disposeParams(m.params);
});

test("editor save/load round trip keeps weights and statistics; a mismatched base is rejected", async () => {
  await setup();
  const m = tinyModel(26);
  const e = warmEditor(m);
  for (const v of Object.values(e.nets)) v.layers[0].U.assign(tf.randomNormal(v.layers[0].U.shape, 0, 0.01, "float32", 5));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "editor-"));
  saveEditor(dir, e, m.config, m.params);
  const back = loadEditor(dir, m.config, m.params);
  for (const [k, n] of Object.entries(e.nets)) {
    assert.equal(back.nets[k].stats.count, n.stats.count);
    assert.equal(maxAbsDiff(back.nets[k].stats.u.m2, n.stats.u.m2), 0);
    assert.equal(maxAbsDiff(back.nets[k].stats.delta.mean, n.stats.delta.mean), 0);
    assert.equal(maxAbsDiff(back.nets[k].layers[0].U, n.layers[0].U), 0);
  }
  const r1 = mendEdit(m, e, [req]);
  const r2 = mendEdit(m, back, [req]);
  const [w1, w2] = [updatedWeights(m.params, [r1.update]), updatedWeights(m.params, [r2.update])];
  for (const n of e.config.innerParams) assert.ok(maxAbsDiff(w1[n], w2[n]) < 1e-6);
  tf.dispose([...Object.values(w1), ...Object.values(w2)]);
  disposeEdit(r1);
  disposeEdit(r2);
  disposeEditor(back);
  const other = tinyModel(27, { n_embd: 24, n_head: 2 });
  assert.throws(() => loadEditor(dir, other.config, other.params), /trained for a base model with n_embd = 16, but this model has n_embd = 24/);
  assert.throws(() => loadEditor("/nonexistent/editor", m.config, m.params), /editor folder "\/nonexistent\/editor" not found/);
  disposeParams(other.params);
  disposeEditor(e);
  disposeParams(m.params);
});

test("low-rank batched forward: each example's rows see exactly its own W + alpha G", async () => {
  await setup();
  const m = tinyModel(28);
  const e = warmEditor(m);
  const reqs = [req, { prompt: "The capital of Peru is", target: "Santiago" }, { prompt: "Biden was born in", target: "Kenya" }];
  const probes = [{ prompt: "The leader of the United States is", target: "Biden" }, { prompt: "The capital city of Peru is", target: "Santiago" }, { prompt: "The birthplace of Biden is", target: "Kenya" }];
  const inner = makeBatch(m.tokenizer, reqs, "target", m.config.n_positions);
  const outer = makeBatch(m.tokenizer, probes, "target", m.config.n_positions);
  const f = captureFactors(m.params, m.config, inner, e.config.innerParams, [0, 1, 2]); // three independent edit calls
  const Ti = inner.inputIds.shape[1];
  const To = outer.inputIds.shape[1];
  tf.tidy(() => {
    const updates = lowRankEdits(e, f);
    const tokenEx = Array.from({ length: outer.inputIds.size }, (_, r) => Math.floor(r / To));
    const lowRank = Object.fromEntries(Object.entries(updates).map(([n, u]) => [n, { ...u, mask: exampleMask(tokenEx, f.rows[n].map((r) => Math.floor(r / Ti))) }]));
    const batched = gptForward(m.params, m.config, outer.inputIds, { attentionMask: outer.attentionMask, lowRank }).logits;
    reqs.forEach((r, i) => {
      const single = mendEdit(m, e, [r]);
      const w = updatedWeights(m.params, [single.update]);
      const one = makeBatch(m.tokenizer, [probes[i]], "target", m.config.n_positions);
      const ref = gptForward({ ...m.params, ...w }, m.config, one.inputIds, { attentionMask: one.attentionMask }).logits;
      const T = ref.shape[1];
      assert.ok(maxAbsDiff(tf.slice(batched, [i, 0, 0], [1, T, -1]), ref) < 1e-4, `example ${i}`);
      disposeEdit(single);
      disposeBatch(one);
    });
  });
  disposeFactors(f);
  disposeBatch(inner);
  disposeBatch(outer);
  disposeEditor(e);
  disposeParams(m.params);
});

test("the update as a value: W0 + α ŨᵀΔ̃ exactly as the differentiable edit forms it; updates applied and removed exactly", async () => {
  await setup();
  const m = tinyModel(29);
  const e = warmEditor(m);
  // The update equals the weights the edit's differentiable core forms from the same factors (the pre-value API).
  const r = mendEdit(m, e, [req, { prompt: "The capital of Peru is", target: "Santiago" }]);
  const b = makeBatch(m.tokenizer, [req, { prompt: "The capital of Peru is", target: "Santiago" }], "target", m.config.n_positions);
  const f = captureEditorFactors(m.params, m.config, b, e);
  const ref = tf.tidy(() => editedWeights(m.params, e, f));
  const w = updatedWeights(m.params, [r.update]);
  for (const n of e.config.innerParams) {
    assert.equal(maxAbsDiff(w[n], ref[n]), 0, `${n}: the value gives the same floats`);
    const d = r.update[n];
    assert.ok("keys" in d && d.keys.shape[0] === f.rows[n].length && d.values.shape[0] === f.rows[n].length);
    assert.deepEqual([...new Set((d as { requests: readonly number[] }).requests)], [0, 1], "every row names its request");
  }
  tf.dispose([...Object.values(ref), ...Object.values(w)]);
  disposeFactors(f);
  disposeBatch(b);
  disposeEdit(r);
  // Three sequential edits; removing the second recomputes W0 + ΔW1 + ΔW3 from W0 (no subtraction).
  const reqs = [req, { prompt: "The president of France is", target: "Merkel" }, { prompt: "Biden was born in", target: "Kenya" }];
  const rs: EditResult[] = [];
  let cur: ParamsModel = m;
  const chain: ParamsModel[] = [];
  for (const q of reqs) {
    const ri = mendEdit(cur, e, [q]);
    rs.push(ri);
    cur = applyUpdates(cur, [ri.update]);
    chain.push(cur);
  }
  const all = applyUpdates(m, rs.map((x) => x.update));
  const without2 = applyUpdates(m, [rs[0].update, rs[2].update]);
  const d1 = updatedWeights(m.params, [rs[0].update]);
  for (const n of e.config.innerParams) {
    assert.equal(maxAbsDiff(all.params[n], chain[2].params[n]), 0, `${n}: all at once = one at a time`);
    const manual = tf.tidy(() => tf.add(d1[n], tf.sub(updatedWeights(m.params, [rs[2].update])[n], m.params[n])));
    assert.ok(maxAbsDiff(without2.params[n], manual) < 1e-6, `${n}: W0 + ΔW1 + ΔW3`);
    assert.ok(maxAbsDiff(without2.params[n], all.params[n]) > 0, `${n}: the second edit mattered`);
    manual.dispose();
  }
  tf.dispose(Object.values(d1));
  [...chain, all, without2].forEach((x) => x.dispose());
  rs.forEach(disposeEdit);
  disposeEditor(e);
  disposeParams(m.params);
});
