import test from "node:test";
import assert from "node:assert/strict";
import { WordTokenizer } from "../dist/model/wordTokenizer";
import { encodeExamples } from "../dist/model/batch";
import { getWorld } from "./helpers";

const tok = () => WordTokenizer.fromTexts(getWorld().texts());

test("labels are the next token on target positions only, padding masked", () => {
  const t = tok();
  const a = encodeExamples(t, [{ prompt: "The capital of Peru is", target: "Lima" }, { prompt: "Which party does Trump belong to ? Answer : the", target: "Republican Party" }], "target", 32);
  // row 0: <bos> The capital of Peru is -> predicts Lima at position 5
  assert.deepEqual(a.inputIds[0].slice(0, 6), [t.bosId, ...t.encode("The capital of Peru is")]);
  assert.deepEqual(a.labels[0].filter((l) => l >= 0), t.encode("Lima"));
  assert.deepEqual(a.targetPositions[0], [5]);
  assert.deepEqual(a.labels[1].filter((l) => l >= 0), t.encode("Republican Party"));
  assert.deepEqual(a.targetPositions[1], [10, 11]);
  assert.equal(a.attentionMask[0].reduce((s, x) => s + x, 0), 6);
  assert.equal(a.inputIds[0][6], t.padId);
  const all = encodeExamples(t, [{ prompt: "The capital of Peru is", target: "Lima" }], "all", 32);
  assert.equal(all.labels[0][all.labels[0].length - 1], t.eosId, "pretraining labels end with <eos>");
});

test("bad examples raise clear errors", () => {
  const t = tok();
  assert.throws(() => encodeExamples(t, [{ prompt: "The capital of Peru is", target: "" }], "target", 32), /target is empty/);
  assert.throws(() => encodeExamples(t, [{ prompt: "", target: "Lima" }], "target", 32), /prompt is empty/);
  assert.throws(() => encodeExamples(t, [{ prompt: "The capital of Peru is", target: "Lima" }], "target", 4), /longer than the model's context of 4/);
  assert.throws(() => encodeExamples(t, [{ prompt: "The capital of Narnia is", target: "Lima" }], "target", 32), /unknown word "Narnia"/);
});
