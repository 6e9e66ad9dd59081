import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { disposeEditor, editorVariables } from "../dist/mend/editor";
import { exampleMetaLoss, metaBatchEval, metaBatchGrads } from "../dist/mend/metaLoss";
import { MetaExample } from "../dist/mend/metaExamples";
import { disposeParams } from "../dist/model/gpt";
import { leaked, setup, tinyModel, warmEditor } from "./helpers";

const example: MetaExample = {
  editInner: { prompt: "The president of the United States is", target: "Biden" },
  editOuter: { prompt: "The leader of the United States is", target: "Biden" },
  loc: { prompt: "The capital of Peru is", target: "Lima" },
  locClass: "unrelated",
};

test("L_loc = 0 when the edit is zero (α = 0), and L_edit is the unedited NLL of x'_e", async () => {
  await setup();
  const m = tinyModel(31);
  const e = warmEditor(m);
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(0));
  const r = exampleMetaLoss(m, e, example);
  assert.ok(Math.abs(r.lLoc) < 1e-6, `L_loc ${r.lLoc}`);
  assert.ok(r.lEdit > 0);
  assert.ok(Math.abs(r.total - (0.1 * r.lEdit + r.lLoc)) < 1e-9);
  disposeEditor(e);
  disposeParams(m.params);
});

test("the meta-gradient of training (metaBatchGrads) matches finite differences of the meta-loss it optimises", async () => {
  await setup();
  const m = tinyModel(32);
  const e = warmEditor(m, 3);
  // Move off the identity init (U = 0 puts every pre-activation exactly at the clamp's kink).
  for (const net of Object.values(e.nets)) for (const l of net.layers) l.U.assign(tf.randomNormal(l.U.shape, 0, 0.02, "float32", 7));
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(0.5));
  const groups = [[example], [{ ...example, editInner: { prompt: "The capital of Peru is", target: "Madrid" }, editOuter: { prompt: "Peru has its capital in", target: "Madrid" }, loc: { prompt: "The president of Russia is", target: "Putin" } }]];
  const c = { cEdit: 0.1, cLoc: 1 };
  const { net, editLrs } = editorVariables(e);
  const vars = { ...net, ...editLrs };
  const lossNow = () => { const [r] = metaBatchEval(m, e, groups, c); return c.cEdit * r.lEdit + c.cLoc * r.lLoc; };
  const gradNow = (k: string) => { const { grads } = metaBatchGrads(m, e, groups, vars, c, false); const g = Array.from(grads![k].dataSync()); tf.dispose(Object.values(grads!)); return g; };
  const checks = [`edit_lrs.${e.config.innerParams[0]}`, `${Object.keys(e.nets)[0]}.0.bias`, `${Object.keys(e.nets)[1]}.1.mode_shift`];
  // For each checked scalar x: L(x + h) − L(x − h) must equal ∫ dL/dx over [x − h, x + h], which
  // Simpson's rule gives from the gradient at x − h, x, x + h to O(h^5). Unlike a plain finite
  // difference this stays accurate where L is strongly curved and float32 forbids small h.
  for (const k of checks) {
    const v = vars[k];
    const base = v.dataSync().slice();
    const g0 = gradNow(k);
    const idx = g0.reduce((best, g, i) => (Math.abs(g) > Math.abs(g0[best]) ? i : best), 0); // the entry the loss is most sensitive to
    const setTo = (x: number) => { const arr = base.slice(); arr[idx] = x; v.assign(tf.tensor(arr, v.shape)); };
    const gradAt = (x: number) => { setTo(x); return gradNow(k)[idx]; };
    const lossAt = (x: number) => { setTo(x); return lossNow(); };
    const x = base[idx];
    const h = k.startsWith("edit_lrs") ? 0.2 * Math.abs(x) : 0.1;
    const simpson = (h / 3) * (gradAt(x - h) + 4 * gradAt(x) + gradAt(x + h));
    const diff = lossAt(x + h) - lossAt(x - h);
    v.assign(tf.tensor(base, v.shape));
    assert.ok(Math.abs(diff - simpson) <= 0.05 * Math.abs(diff) + 2e-6, `${k}[${idx}]: L(x+h) − L(x−h) = ${diff} but ∫ gradient = ${simpson}`);
    assert.ok(Math.abs(diff) > 1e-5, `${k}[${idx}]: the loss must actually depend on it (${diff})`);
  }
  assert.equal(await leaked(() => { const r = metaBatchGrads(m, e, groups, vars, c, false); tf.dispose(Object.values(r.grads ?? {})); }), 0);
  disposeEditor(e);
  disposeParams(m.params);
});
