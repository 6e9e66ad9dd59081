/** GRACE-style editing (src/lifelong/grace.ts): the codebook's rules, what it leaves alone, tensors. */
import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { defaultGraceConfig, GraceModel, graceEdit } from "../dist/lifelong/grace";
import { disposeBatch, encodeExamples, toBatch } from "../dist/model/batch";
import { scoreTargets } from "../dist/model/score";
import * as path from "path";
import { loadModel } from "../dist/model/modelFolder";
import { ROOT, setup } from "./helpers";

/** The shipped facts-world model: GRACE's edits need a trained model (a random one's output is near uniform whatever one activation does). */
const base = () => loadModel(path.join(ROOT, "checkpoints", "base"));

const P = "The capital of France is";

test("a GRACE edit makes its target the answer on its prompt; an input outside every radius runs the base model exactly", async () => {
  await setup();
  const m = base();
  const cfg = { ...defaultGraceConfig(m.config.n_layer), steps: 60 };
  assert.equal(cfg.weight, `h.${Math.floor((35 / 48) * m.config.n_layer)}.mlp.c_fc.weight`);
  const before = tf.memory().numTensors;
  const { model: g, entry } = graceEdit(m, [{ prompt: P, target: "Rome" }], cfg);
  assert.deepEqual(entry, [0]);
  assert.ok(scoreTargets(g, [{ prompt: P, target: "Rome" }])[0].exact, "the edit holds");
  // another prompt: its query is farther than ε from the key, so the logits are the base model's
  const far = [{ prompt: "The president of Russia is", target: "Putin" }];
  const a = encodeExamples(m.tokenizer, far, "target", m.config.n_positions);
  const b = toBatch(a);
  assert.deepEqual(g.routes(b, a), [-1]);
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(g.logits(b, a), m.logits(b)))).dataSync()[0]);
  assert.equal(d, 0);
  const own = encodeExamples(m.tokenizer, [{ prompt: P, target: "Rome" }], "target", m.config.n_positions);
  const ob = toBatch(own);
  assert.deepEqual(g.routes(ob, own), [0], "the edit's own prompt routes to its entry");
  disposeBatch(b);
  disposeBatch(ob);
  g.dispose();
  assert.equal(tf.memory().numTensors, before, "an edit and its model leave no tensors once disposed");
  m.dispose();
});

test("GRACE's codebook rules: the same label within a radius trains the old entry; another label splits both radii", async () => {
  await setup();
  const m = base();
  const cfg = { ...defaultGraceConfig(m.config.n_layer), steps: 60 };
  const first = graceEdit(m, [{ prompt: P, target: "Rome" }], cfg).model;
  // the same prompt and label: distance 0, within the radius, no new key
  const same = graceEdit(first, [{ prompt: P, target: "Rome" }], cfg).model;
  assert.equal(same.codebook.entries.length, 1);
  assert.equal(same.codebook.entries[0].edits.length, 2);
  assert.equal(same.codebook.entries[0].eps, cfg.epsInit);
  // another label at distance 0: a new key; the old radius becomes 0 − 1e-5 (never matches), the new one 0
  const other = graceEdit(same, [{ prompt: P, target: "Paris" }], cfg).model;
  assert.deepEqual(other.codebook.entries.map((e) => e.eps), [-1e-5, 0]);
  assert.ok(scoreTargets(other, [{ prompt: P, target: "Paris" }])[0].exact, "the newer edit answers");
  // a far prompt makes a key of its own with ε_init
  const far = graceEdit(other, [{ prompt: "The president of Russia is", target: "Biden" }], cfg).model;
  assert.equal(far.codebook.entries.length, 3);
  assert.equal(far.codebook.entries[2].eps, cfg.epsInit);
  assert.throws(() => graceEdit(far, [{ prompt: P, target: "Rome" }], { ...cfg, weight: "h.0.mlp.c_fc.weight" }), /codebook sits on h\.\d\.mlp\.c_fc\.weight, not h\.0\.mlp\.c_fc\.weight/);
  assert.throws(() => graceEdit(m, [{ prompt: P, target: "Rome" }], { ...cfg, weight: "h.0.mlp.nope.weight" }), /"h\.0\.mlp\.nope\.weight" is not a linear weight of this model/);
  for (const g of [first, same, other, far]) (g as GraceModel).dispose();
  m.dispose();
});

test("GRACE in the method registry: a stream chains its codebook from edit to edit; one layer only", async () => {
  await setup();
  const { buildMethods, disposeMethodEdit } = await import("../dist/eval/methods");
  const m = base();
  assert.throws(() => buildMethods(["GRACE"], { lifelong: { model: m, weights: ["h.0.mlp.c_fc.weight", "h.1.mlp.c_fc.weight"] } }), /method GRACE adapts one layer; 2 weights were named/);
  const [grace] = buildMethods(["GRACE"], { lifelong: { model: m, options: { graceSteps: 30 } } });
  const before = tf.memory().numTensors;
  const a = grace.edit(m, [{ prompt: P, target: "Rome" }]);
  const b = grace.edit(a.model, [{ prompt: "The president of Russia is", target: "Biden" }]);
  assert.equal((b.model as GraceModel).codebook.entries.length, 2, "the second edit continues the first's codebook");
  assert.equal((b.state!.meta.entries as unknown[]).length, 2);
  assert.ok(scoreTargets(b.model, [{ prompt: P, target: "Rome" }])[0].exact, "the first edit still holds");
  disposeMethodEdit(a);
  disposeMethodEdit(b);
  assert.equal(tf.memory().numTensors, before);
  m.dispose();
});
