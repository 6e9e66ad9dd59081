/** KE (src/baselines/ke.ts): the low-rank update equals the official dense formula; rank, one request, training, folders. */
import test from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { createKe, DEFAULT_KE_CONFIG, disposeKe, keCondition, keEdit, keKind, keMaskAndOffset, loadKe, saveKe } from "../dist/baselines/ke";
import { autodiffWeightGradient } from "../dist/mend/factor";
import { DEFAULT_TRAIN_EDITOR_CONFIG, trainEditor } from "../dist/mend/train";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { denseDelta, disposeUpdate } from "../dist/model/weightUpdate";
import { numericalRank } from "../dist/viz/inspect";
import { getWorld, maxAbsDiff, setup, tinyModel } from "./helpers";

const req = { prompt: "The capital of Peru is", target: "Madrid" };
const inner = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"];

test("KE's low-rank update is s (∇W ⊙ a + b) with a, b rank-1 from the condition; rank ≤ rows + 1; one request at a time", async () => {
  await setup();
  const m = tinyModel(51, { initializer_range: 0.2 });
  const ke = createKe(m, { ...DEFAULT_KE_CONFIG, hidden: 16, condition: 12, innerParams: inner }, 3);
  const e = keEdit(m, ke, [req]);
  // the condition the edit used: prediction >> target || prompt (the world vocabulary joins with <eos>)
  const b = makeBatch(m.tokenizer, [req], "target", m.config.n_positions);
  const labels = b.labels.arraySync()[0] as number[];
  const pos = labels.flatMap((l, t) => (l >= 0 ? [t] : []));
  const logits = tf.tidy(() => tf.argMax(require("../dist/model/gpt").gptForward(m.params, m.config, b.inputIds).logits, -1).arraySync() as number[][]);
  const prompt = m.tokenizer.encode(req.prompt);
  const ids = [...pos.map((t) => logits[0][t]), m.tokenizer.eosId, ...pos.map((t) => labels[t]), m.tokenizer.eosId, ...prompt];
  const c = keCondition(ke, [ids]);
  for (const n of inner) {
    const g = autodiffWeightGradient(m.params, m.config, b, n);
    const { a, b: off, scale } = keMaskAndOffset(ke, n, c);
    const want = tf.tidy(() => tf.mul(scale, tf.add(tf.mul(g, a), off)));
    const got = denseDelta(e.update[n]);
    assert.ok(maxAbsDiff(got, want) <= 1e-5 * Math.max(1, tf.tidy(() => tf.max(tf.abs(want)).dataSync()[0])), `${n}: low-rank = dense formula`);
    assert.ok(numericalRank(got) <= e.update[n].keys.shape[0], `${n}: rank at most the rows`);
    assert.equal(e.update[n].keys.shape[0], 2, "the last block's one token row (the answer position) and the offset row: rank 2 for one example");
    assert.ok(numericalRank(a) === 1 && numericalRank(off) === 1, "mask and offset are rank 1");
    tf.dispose([g, a, off, want, got]);
  }
  c.dispose();
  disposeBatch(b);
  disposeUpdate(e.update);
  assert.throws(() => keEdit(m, ke, [req, { prompt: "The capital of Chile is", target: "Lima" }]), /KE edits one request at a time/);
  disposeKe(ke);
  m.dispose();
});

test("KE trains through the meta-training loop, saves and loads to the same edits, and leaks nothing", async () => {
  await setup();
  const m = tinyModel(52, { initializer_range: 0.2 });
  const world = getWorld();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mend-ke-"));
  const cfg = { ...DEFAULT_TRAIN_EDITOR_CONFIG, maxSteps: 3, accumulate: 2, valEvery: 3, valSize: 4, seed: 1, editor: { innerParams: inner, hidden: 16, condition: 12 } };
  const run = await trainEditor(m, world.editRecords("train").slice(0, 40), world.editRecords("val").slice(0, 8), path.join(dir, "run"), cfg, { kind: keKind });
  assert.equal(run.steps, 3);
  const ke = loadKe(run.bestDir, m);
  saveKe(path.join(dir, "copy"), ke, m);
  const again = loadKe(path.join(dir, "copy"), m);
  const [x, y] = [keEdit(m, ke, [req]), keEdit(m, again, [req])];
  for (const n of inner) assert.equal(maxAbsDiff(denseDelta(x.update[n]), denseDelta(y.update[n])), 0);
  [x, y].forEach((r) => disposeUpdate(r.update));
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) disposeUpdate(keEdit(m, ke, [req]).update);
  assert.equal(tf.memory().numTensors, before, "repeated KE edits leave no tensor");
  assert.throws(() => loadKe(path.join(dir, "copy"), tinyModel(53)), /another base model|fingerprint/);
  disposeKe(ke);
  disposeKe(again);
  m.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
