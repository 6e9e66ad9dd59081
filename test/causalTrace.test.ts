/** Causal tracing (src/eval/causalTrace.ts) and the forward's intervention sites. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { averageTrace, causalTrace, CausalTrace, subjectNoiseLevel, TRACE_KINDS } from "../dist/eval/causalTrace";
import { gptForward, HiddenSite } from "../dist/model/gpt";
import { getWorld, maxAbsDiff, setup, tinyModel } from "./helpers";

test("intervene: reading every site changes nothing; replacing the last residual state replaces the output", async () => {
  await setup();
  const m = tinyModel(4);
  const ids = tf.tensor2d([[1, 5, 9, 12, 3]], [1, 5], "int32");
  const seen: HiddenSite[] = [];
  const plain = tf.tidy(() => gptForward(m.params, m.config, ids).logits);
  const read = tf.tidy(() => gptForward(m.params, m.config, ids, { intervene: (s, x) => (seen.push(s), x) }).logits);
  assert.equal(maxAbsDiff(plain, read), 0);
  assert.deepEqual(seen, ["embed", "h.0.attn", "h.0.mlp", "h.0", "h.1.attn", "h.1.mlp", "h.1"]);
  const zeroed = tf.tidy(() => gptForward(m.params, m.config, ids, { intervene: (s, x) => (s === "h.1" ? tf.zerosLike(x) : x) }).logits);
  assert.ok(maxAbsDiff(plain, zeroed) > 1e-3, "a replaced state reaches the logits");
  tf.dispose([ids, plain, read, zeroed]);
  m.dispose();
});

test("causalTrace: states before the subject restore nothing, the last residual state restores everything; no tensor left", async () => {
  await setup();
  const m = tinyModel(5, { n_layer: 3, initializer_range: 0.3 }); // weights large enough for the input to matter
  const world = getWorld();
  const noise = subjectNoiseLevel(m, world.subjects.map((s) => s.name));
  assert.ok(noise > 0);
  const before = tf.memory().numTensors;
  const tr = causalTrace(m, "The president of the United States is", "the United States", "Trump", { noise, samples: 4, seed: 3 });
  assert.equal(tf.memory().numTensors, before, "causalTrace leaves no tensor");
  assert.deepEqual(tr.tokens, ["<bos>", "The", "president", "of", "the", "United", "States", "is"]);
  assert.deepEqual(tr.subjectRange, [4, 7]);
  const T = tr.tokens.length;
  for (const k of TRACE_KINDS) {
    assert.equal(tr.restored[k].length, 3);
    for (const row of tr.restored[k]) {
      assert.equal(row.length, T);
      for (let t = 0; t < 4; t++) assert.equal(row[t], tr.pCorrupt, `${k}: a state before the subject restores nothing`);
    }
  }
  // the residual stream after the last block at the last position is the whole clean computation there
  assert.ok(Math.abs(tr.restored.hidden[2][T - 1] - tr.pClean) < 1e-5);
  // the corruption changes the answer's probability (noise on the subject is not a no-op)
  assert.ok(Math.abs(tr.pCorrupt - tr.pClean) > 1e-6);
  // seeded: the same trace again
  const again = causalTrace(m, "The president of the United States is", "the United States", "Trump", { noise, samples: 4, seed: 3 });
  assert.deepEqual(again.restored, tr.restored);
  assert.throws(() => causalTrace(m, "The capital of France is", "Peru", "Paris", { noise }), /subject "Peru" does not occur/);
  assert.throws(() => causalTrace(m, "The capital of France is", "France", "Paris", { noise: 0 }), /noise must be a positive number/);
  m.dispose();
});

test("averageTrace: ROME's token groups, a fact's tokens of one group counted once", () => {
  const mk = (tokens: string[], range: [number, number], pCorrupt: number, row: number[]): CausalTrace => ({
    prompt: "",
    subject: "",
    answer: "",
    tokens,
    subjectRange: range,
    pClean: 1,
    pCorrupt,
    restored: { hidden: [row], mlp: [row], attn: [row] },
    noise: 1,
    samples: 1,
  });
  // tokens: bos | s0 s1 s2 | x | y | last
  const a = mk(["b", "s0", "s1", "s2", "x", "y", "z"], [1, 4], 0.1, [0.1, 0.3, 0.5, 0.7, 0.2, 0.4, 0.9]);
  // a one-token subject directly before the last token
  const b = mk(["b", "s", "z"], [1, 2], 0.2, [0.2, 0.6, 0.8]);
  const av = averageTrace([a, b]);
  const h = av.effect.hidden[0].map((x) => Math.round(x * 1000) / 1000);
  // first subject: a 0.2, b 0.4 (its only subject token is first and last) -> 0.3; middle: a only, 0.4;
  // last subject: a 0.6, b 0.4 -> 0.5; first subsequent: a 0.1, b 0.6 (also its last token) -> 0.35;
  // further: a only, 0.3; last: a 0.8, b 0.6 -> 0.7
  assert.deepEqual(h, [0.3, 0.4, 0.5, 0.35, 0.3, 0.7]);
  assert.equal(av.facts, 2);
  assert.throws(() => averageTrace([]), /no traces/);
});
