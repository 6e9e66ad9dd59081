import test from "node:test";
import { targetRows } from "../dist/extensions/targetRows";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { autodiffWeightGradient, captureFactors, disposeFactors, outerProductSum } from "../dist/mend/factor";
import { disposeParams } from "../dist/model/gpt";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { leaked, maxAbsDiff, setup, tinyModel } from "./helpers";

const inner = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight", "h.0.mlp.c_fc.weight"];

test("rank-1 identity: sum_i u_i delta_i^T equals the autodiff gradient of each edited weight", async () => {
  await setup();
  const m = tinyModel(11);
  const b = makeBatch(m.tokenizer, [{ prompt: "The president of the United States is", target: "Biden" }, { prompt: "The capital of Peru is", target: "Lima" }], "target", m.config.n_positions);
  const f = captureFactors(m.params, m.config, b, inner);
  for (const name of inner) {
    const g1 = outerProductSum(f.u[name], f.delta[name]);
    const g2 = autodiffWeightGradient(m.params, m.config, b, name);
    const scale = tf.tidy(() => tf.max(tf.abs(g2)).dataSync()[0]);
    assert.ok(scale > 0);
    assert.ok(maxAbsDiff(g1, g2) < 1e-4 * Math.max(1, scale), name);
    tf.dispose([g1, g2]);
  }
  disposeFactors(f);
  disposeBatch(b);
  disposeParams(m.params);
});

test("padding rows (zero delta) are dropped, real rows kept", async () => {
  await setup();
  const m = tinyModel(12);
  const b = makeBatch(m.tokenizer, [{ prompt: "The capital of Peru is", target: "Lima" }, { prompt: "Which party does Trump belong to ? Answer : the", target: "Republican Party" }], "target", m.config.n_positions);
  const T = b.inputIds.shape[1];
  const f = captureFactors(m.params, m.config, b, inner);
  // Row 0 has 6 real tokens (label at position 5); row 1 fills all T positions (labels at T-2, T-1).
  // In h.0, δ is non-zero at every real position up to the last label; in the last block, whose
  // output reaches only its own position's logits, δ is non-zero only at labelled positions.
  const early = [...Array(6).keys(), ...Array.from({ length: T }, (_, i) => T + i)];
  const last = [5, 2 * T - 2, 2 * T - 1];
  assert.deepEqual(f.rows["h.0.mlp.c_fc.weight"], early);
  assert.deepEqual(f.rows["h.1.mlp.c_fc.weight"], last);
  assert.deepEqual(f.rows["h.1.mlp.c_proj.weight"], last);
  for (const name of inner) {
    assert.equal(f.u[name].shape[0], f.rows[name].length);
    assert.equal(f.delta[name].shape[0], f.rows[name].length);
  }
  disposeFactors(f);
  disposeBatch(b);
  disposeParams(m.params);
});

test("capturing factors leaks no tensors and rejects unknown weights", async () => {
  await setup();
  const m = tinyModel(13);
  const b = makeBatch(m.tokenizer, [{ prompt: "The capital of Peru is", target: "Lima" }], "target", m.config.n_positions);
  disposeFactors(captureFactors(m.params, m.config, b, inner));
  assert.equal(await leaked(() => disposeFactors(captureFactors(m.params, m.config, b, inner))), 0);
  assert.throws(() => captureFactors(m.params, m.config, b, ["h.5.mlp.c_fc.weight"]), /not a parameter of the base model/);
  assert.throws(() => captureFactors(m.params, m.config, b, ["h.0.ln_1.weight"]), /must be a 2-D weight/);
  disposeBatch(b);
  disposeParams(m.params);
});

test("the structural row filter (from labels) keeps exactly the rows the official data filter keeps, for every linear weight", async () => {
  await setup();
  const m = tinyModel(14, { n_layer: 3 });
  const b = makeBatch(m.tokenizer, [{ prompt: "The capital of Peru is", target: "Lima" }, { prompt: "Which party does Trump belong to ? Answer : the", target: "Republican Party" }, { prompt: "Biden was born in", target: "the United States" }], "target", m.config.n_positions);
  const names = [0, 1, 2].flatMap((i) => ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map((w) => `h.${i}.${w}.weight`));
  const a = captureFactors(m.params, m.config, b, names, undefined, "structural");
  const d = captureFactors(m.params, m.config, b, names, undefined, "data");
  for (const n of names) {
    assert.deepEqual(a.rows[n], d.rows[n], n);
    assert.equal(maxAbsDiff(a.delta[n], d.delta[n]), 0);
  }
  disposeFactors(a);
  disposeFactors(d);
  disposeBatch(b);
  disposeParams(m.params);
});

test('rows = "target" keeps only the labelled positions in every layer, the same u and δ there', async () => {
  await setup();
  const m = tinyModel(15);
  const b = makeBatch(m.tokenizer, [{ prompt: "The capital of Peru is", target: "Lima" }, { prompt: "Which party does Trump belong to ? Answer : the", target: "Republican Party" }], "target", m.config.n_positions);
  const T = b.inputIds.shape[1];
  const all = captureFactors(m.params, m.config, b, inner);
  const tgt = captureFactors(m.params, m.config, b, inner, undefined, "structural", targetRows);
  const labelled = [5, 2 * T - 2, 2 * T - 1];
  for (const name of inner) {
    assert.deepEqual(tgt.rows[name], labelled, name);
    assert.equal(tgt.u[name].shape[0], labelled.length);
    // the kept rows are the official rows at those positions, unchanged
    const at = labelled.map((r) => all.rows[name].indexOf(r));
    const [uAll, dAll] = tf.tidy(() => [tf.gather(all.u[name], at), tf.gather(all.delta[name], at)]);
    assert.equal(maxAbsDiff(uAll, tgt.u[name]), 0, name);
    assert.equal(maxAbsDiff(dAll, tgt.delta[name]), 0, name);
    tf.dispose([uAll, dAll]);
  }
  assert.ok(all.rows["h.0.mlp.c_fc.weight"].length > labelled.length, "the official rows of an early block include unlabelled positions");
  disposeFactors(all);
  disposeFactors(tgt);
  disposeBatch(b);
  disposeParams(m.params);
});
