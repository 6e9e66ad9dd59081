/** ENN (src/baselines/enn.ts): one SGD step with learned step sizes, from ENN's own copy of the base; training trains the copy. */
import test from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { createEnn, DEFAULT_ENN_CONFIG, disposeEnn, ennEdit, ennKind, ennStepSizes, loadEnn } from "../dist/baselines/enn";
import { autodiffWeightGradient } from "../dist/mend/factor";
import { DEFAULT_TRAIN_EDITOR_CONFIG, trainEditor } from "../dist/mend/train";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { applyUpdates } from "../dist/model/paramsModel";
import { disposeUpdate } from "../dist/model/weightUpdate";
import { getWorld, maxAbsDiff, setup, tinyModel } from "./helpers";

const req = { prompt: "The capital of Peru is", target: "Madrid" };
const inner = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"];

test("ENN's edit is one SGD step −λ∇W from its own copy of the base, and only the step from an ENN-edited model", async () => {
  await setup();
  const m = tinyModel(61, { initializer_range: 0.2 });
  const enn = createEnn(m, { ...DEFAULT_ENN_CONFIG, innerParams: inner });
  enn.params["h.0.mlp.c_fc.weight"].assign(tf.add(enn.params["h.0.mlp.c_fc.weight"], 0.01)); // as if training had moved the copy
  const e = ennEdit(m, enn, [req]);
  const edited = applyUpdates(m, [e.update]);
  const b = makeBatch(m.tokenizer, [req], "target", m.config.n_positions);
  for (const n of inner) {
    const g = autodiffWeightGradient(enn.params, m.config, b, n);
    const want = tf.tidy(() => tf.sub(enn.params[n], tf.mul(ennStepSizes(enn)[n], g)));
    assert.ok(maxAbsDiff(edited.params[n], want) < 1e-5, `${n}: W_copy − λ ∇W`);
    tf.dispose([g, want]);
  }
  assert.ok(maxAbsDiff(edited.params["h.0.mlp.c_fc.weight"], enn.params["h.0.mlp.c_fc.weight"]) < 1e-6, "the other weights are the copy's");
  // a second edit of the ENN-edited model takes only the step, on its own weights
  const e2 = ennEdit(edited, enn, [req], e.state);
  const twice = applyUpdates(edited, [e2.update]);
  assert.deepEqual(Object.keys(e2.update).sort(), [...inner].sort());
  assert.ok(maxAbsDiff(twice.params["h.0.mlp.c_fc.weight"], edited.params["h.0.mlp.c_fc.weight"]) === 0);
  const g2 = autodiffWeightGradient(edited.params, m.config, b, inner[1]);
  const want2 = tf.tidy(() => tf.sub(edited.params[inner[1]], tf.mul(ennStepSizes(enn)[inner[1]], g2)));
  assert.ok(maxAbsDiff(twice.params[inner[1]], want2) < 1e-5);
  tf.dispose([g2, want2]);
  disposeBatch(b);
  twice.dispose();
  edited.dispose();
  [e, e2].forEach((x) => disposeUpdate(x.update));
  disposeEnn(enn);
  m.dispose();
});

test("ENN trains its copy of the base and its step sizes through the meta-training loop (c_base KL reported), saves and loads; the base is untouched", async () => {
  await setup();
  const m = tinyModel(62, { initializer_range: 0.2 });
  const before = m.params["h.0.attn.c_attn.weight"].arraySync();
  const world = getWorld();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mend-enn-"));
  const seen: Record<string, number>[] = [];
  const cfg = { ...DEFAULT_TRAIN_EDITOR_CONFIG, maxSteps: 3, accumulate: 2, valEvery: 3, valSize: 4, seed: 1, lr: 1e-3, editor: { innerParams: inner } };
  const run = await trainEditor(m, world.editRecords("train").slice(0, 40), world.editRecords("val").slice(0, 8), path.join(dir, "run"), cfg, { kind: ennKind, onProgress: (p) => seen.push({ ...(p as unknown as { extra?: Record<string, number> }).extra }) });
  assert.equal(run.steps, 3);
  const enn = loadEnn(run.bestDir, m);
  assert.ok(maxAbsDiff(enn.params["h.0.attn.c_attn.weight"], m.params["h.0.attn.c_attn.weight"]) > 0, "the copy was trained");
  assert.ok(Object.values(ennStepSizes(enn)).some((x) => x !== DEFAULT_ENN_CONFIG.editLr), "the step sizes were trained");
  assert.deepEqual(m.params["h.0.attn.c_attn.weight"].arraySync(), before, "the base model is never changed");
  assert.throws(() => loadEnn(run.bestDir, tinyModel(63)), /fingerprint/);
  disposeEnn(enn);
  m.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
