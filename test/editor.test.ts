import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { applyEditor, countEditorParams, createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor, editorVariables, EditorConfig, netForward } from "../dist/mend/editor";
import { maxAbsDiff, setup } from "./helpers";

const shapes = { "h.0.mlp.c_fc.weight": [8, 32], "h.0.mlp.c_proj.weight": [32, 8], "h.1.mlp.c_fc.weight": [8, 32], "h.1.mlp.c_proj.weight": [32, 8] };
const cfg: EditorConfig = { ...DEFAULT_EDITOR_CONFIG, innerParams: Object.keys(shapes) };

test("one shared net per weight shape, one mode per weight, one edit lr per weight", async () => {
  await setup();
  const e = createEditor(cfg, shapes, 0);
  assert.deepEqual(Object.keys(e.nets).sort(), ["32x8", "8x32"]);
  assert.deepEqual(e.nets["8x32"].modes, ["h.0.mlp.c_fc.weight", "h.1.mlp.c_fc.weight"]);
  assert.equal(e.nets["8x32"].layers.length, 2);
  assert.deepEqual(e.nets["8x32"].layers[0].modeScale.shape, [2, 40]);
  assert.equal(Object.keys(e.editLrs).length, 4);
  assert.ok(Math.abs(e.editLrs["h.0.mlp.c_fc.weight"].dataSync()[0] - 1e-4) < 1e-10);
  // 2 nets x 2 layers x (2 D r + D + 2 modes D), r = min(1920, D) = D = 40
  assert.equal(countEditorParams(e), 2 * 2 * (2 * 40 * 40 + 40 + 2 * 2 * 40) + 4);
  disposeEditor(e);
});

test("identity initialisation: the editor returns its input exactly", async () => {
  await setup();
  const e = createEditor(cfg, shapes, 1);
  const u = tf.randomNormal([5, 8], 0, 1, "float32", 1) as tf.Tensor2D;
  const d = tf.randomNormal([5, 32], 0, 1, "float32", 2) as tf.Tensor2D;
  const { uTilde, deltaTilde } = applyEditor(e, "h.1.mlp.c_fc.weight", u, d);
  assert.equal(maxAbsDiff(uTilde, u), 0);
  assert.equal(maxAbsDiff(deltaTilde, d), 0);
  tf.dispose([u, d, uTilde, deltaTilde]);
  disposeEditor(e);
});

test("at identity init the editor is not dead (max(x,0) passes gradient at 0; relu would not)", async () => {
  await setup();
  const e = createEditor(cfg, shapes, 2);
  const net = e.nets["8x32"];
  const z = tf.randomNormal([6, 40], 0, 1, "float32", 3) as tf.Tensor2D;
  const w = tf.randomNormal([6, 40], 0, 1, "float32", 4);
  const { net: vars } = editorVariables(e);
  const mine = Object.entries(vars).filter(([k]) => k.startsWith("8x32."));
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(netForward(net, 1, z, "id"), w)) as tf.Scalar, mine.map(([, v]) => v));
  // At U = 0: pre = b*s + o = 0, so U, bias and shift get gradients; V and scale start moving once U ≠ 0.
  for (const [k, v] of mine.filter(([k]) => /\.(U|bias|mode_shift)$/.test(k))) {
    const norm = tf.tidy(() => tf.norm(grads[v.name]).dataSync()[0]);
    assert.ok(norm > 0, `${k} gets a gradient at init`);
  }
  // The same net with tf.relu would be dead: its gradient at 0 is 0.
  const dead = tf.grad((x: tf.Tensor) => tf.sum(tf.relu(x)))(tf.zeros([3]));
  assert.equal(tf.sum(dead).dataSync()[0], 0);
  tf.dispose([value, ...Object.values(grads), z, w, dead]);
  disposeEditor(e);
});

test("xavier init (the 'No ID init' ablation) is not the identity", async () => {
  await setup();
  const e = createEditor({ ...cfg, init: "xavier" }, shapes, 3);
  const u = tf.randomNormal([5, 8], 0, 1, "float32", 1) as tf.Tensor2D;
  const d = tf.randomNormal([5, 32], 0, 1, "float32", 2) as tf.Tensor2D;
  const { uTilde } = applyEditor(e, "h.0.mlp.c_fc.weight", u, d);
  assert.ok(maxAbsDiff(uTilde, u) > 1e-3);
  tf.dispose([u, d, uTilde]);
  disposeEditor(e);
});

test("bad editor configs are clear errors", async () => {
  await setup();
  assert.throws(() => createEditor({ ...cfg, innerParams: ["h.3.mlp.c_fc.weight"] }, shapes, 0), /"h.3.mlp.c_fc.weight" is not a weight of the base model/);
  assert.throws(() => createEditor({ ...cfg, innerParams: [] }, shapes, 0), /innerParams is empty/);
});

test("the editor config takes the official keys only; an addition is named as unknown", async () => {
  await setup();
  assert.throws(() => createEditor({ ...cfg, keyPrecond: 1 } as unknown as EditorConfig, shapes, 0), /unknown key\(s\) keyPrecond/);
  assert.throws(() => createEditor({ ...cfg, rank: 1.5 }, shapes, 0), /rank must be a positive integer/);
});

test("editor initialisation is reproducible from the seed (also seed 0, which tfjs alone treats as unseeded)", async () => {
  await setup();
  for (const seed of [0, 5]) {
    const a = createEditor(cfg, shapes, seed);
    const b = createEditor(cfg, shapes, seed);
    for (const key of Object.keys(a.nets)) {
      a.nets[key].layers.forEach((l, i) => assert.equal(maxAbsDiff(l.V, b.nets[key].layers[i].V), 0, `seed ${seed}, ${key}.${i}.V`));
    }
    disposeEditor(a);
    disposeEditor(b);
  }
});

test("editor structures (the paper's ablations): no sharing, and nets on u only, δ only or the smaller side", async () => {
  await setup();
  const shapes = { a: [8, 32], b: [32, 8], c: [8, 32] };
  const base = { ...DEFAULT_EDITOR_CONFIG, innerParams: ["a", "b", "c"], rank: 4 };
  const u = (n: number, d: number) => tf.randomNormal([n, d], 0, 1, "float32", n + d) as tf.Tensor2D;
  // no sharing: one net per weight, one mode each
  const unshared = createEditor({ ...base, shared: false }, shapes, 1);
  assert.deepEqual(Object.keys(unshared.nets).sort(), ["a", "b", "c"]);
  assert.ok(Object.values(unshared.nets).every((n) => n.modes.length === 1 && n.part === "joint"));
  const shared = createEditor(base, shapes, 1);
  assert.deepEqual(Object.keys(shared.nets).sort(), ["32x8", "8x32"]);
  assert.ok(countEditorParams(unshared) > countEditorParams(shared), "three nets hold more than two");
  // one-sided nets: the side they do not read passes through exactly; the net is the identity at init
  for (const [transform, parts] of [["u", ["u", "u"]], ["delta", ["delta", "delta"]], ["smaller", ["u", "delta"]]] as const) {
    const e = createEditor({ ...base, transform }, shapes, 2);
    assert.deepEqual([e.nets["8x32"].part, e.nets["32x8"].part], parts, `${transform}: which side each net reads`);
    for (const [name, [dIn, dOut]] of Object.entries(shapes)) {
      const [ub, db] = [u(3, dIn), u(3, dOut)];
      const out = applyEditor(e, name, ub, db);
      assert.equal(maxAbsDiff(out.uTilde, ub), 0);
      assert.equal(maxAbsDiff(out.deltaTilde, db), 0);
      const side = e.nets[`${dIn}x${dOut}`].part;
      assert.equal(e.nets[`${dIn}x${dOut}`].layers[0].V.shape[0], side === "u" ? dIn : dOut, `${transform}: the net is as wide as its side`);
      tf.dispose([ub, db, out.uTilde, out.deltaTilde]);
    }
    // after a change to the net, only the side it reads moves
    const net = e.nets["8x32"];
    net.layers[0].U.assign(tf.onesLike(net.layers[0].U));
    const [ub, db] = [u(2, 8), u(2, 32)];
    const out = applyEditor(e, "a", ub, db);
    const read = net.part === "u" ? [out.uTilde, ub] : [out.deltaTilde, db];
    const passed = net.part === "u" ? [out.deltaTilde, db] : [out.uTilde, ub];
    assert.ok(maxAbsDiff(read[0], read[1]) > 1e-3);
    assert.equal(maxAbsDiff(passed[0], passed[1]), 0);
    tf.dispose([ub, db, out.uTilde, out.deltaTilde]);
    disposeEditor(e);
  }
  assert.throws(() => createEditor({ ...base, transform: "both" as never }, shapes, 1), /transform must be one of joint, u, delta, smaller/);
  assert.throws(() => createEditor({ ...base, shared: "no" as never }, shapes, 1), /shared must be true or false/);
  disposeEditor(unshared);
  disposeEditor(shared);
});
