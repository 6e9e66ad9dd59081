import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { editedWeights } from "../dist/mend/edit";
import { disposeEditor, editorVariables } from "../dist/mend/editor";
import { captureFactors, disposeFactors } from "../dist/mend/factor";
import { metaLoss, preEditLogits } from "../dist/mend/metaLoss";
import { disposeParams } from "../dist/model/gpt";
import { disposeBatch, makeBatch } from "../dist/world/batch";
import { setup, tinyModel, warmEditor } from "./helpers";

test("L_loc = 0 for an unedited model", async () => {
  await setup();
  const m = tinyModel(31);
  const loc = makeBatch(m.tokenizer, [{ prompt: "The capital of Peru is", target: "Lima" }], "target", m.config.n_positions);
  tf.tidy(() => {
    const pre = preEditLogits(m.params, m.config, loc);
    assert.ok(Math.abs(locLoss(m.params, m.config, loc, {}, pre).loss.dataSync()[0]) < 1e-6);
  });
  disposeBatch(loc);
  disposeParams(m.params);
});

test("the meta-gradient matches finite differences of the meta-loss", async () => {
  await setup();
  const m = tinyModel(32);
  const e = warmEditor(m, 3);
  // Move off the identity init (U = 0 puts every pre-activation exactly at the clamp's kink).
  for (const net of Object.values(e.nets)) for (const l of net.layers) l.U.assign(tf.randomNormal(l.U.shape, 0, 0.02, "float32", 7));
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(0.5));
  const inner = makeBatch(m.tokenizer, [{ prompt: "The president of the United States is", target: "Biden" }], "target", m.config.n_positions);
  const outer = makeBatch(m.tokenizer, [{ prompt: "The leader of the United States is", target: "Biden" }], "target", m.config.n_positions);
  const loc = makeBatch(m.tokenizer, [{ prompt: "The capital of Peru is", target: "Lima" }], "target", m.config.n_positions);
  const f = captureFactors(m.params, m.config, inner, e.config.innerParams);
  const pre = preEditLogits(m.params, m.config, loc);
  const loss = () => metaLoss(m.params, m.config, editedWeights(m.params, e, f), outer, loc, pre).total;
  const { net, editLrs } = editorVariables(e);
  const checks: [tf.Variable, number][] = [[editLrs[`edit_lrs.${e.config.innerParams[0]}`], 0], [net[`${Object.keys(e.nets)[0]}.0.bias`], 3], [net[`${Object.keys(e.nets)[1]}.1.mode_shift`], 5]];
  // For each checked scalar x: L(x + h) − L(x − h) must equal ∫ dL/dx over [x − h, x + h], which
  // Simpson's rule gives from the autodiff gradient at x − h, x, x + h to O(h^5). Unlike a plain
  // finite difference this stays accurate where L is strongly curved (large edits) and float32
  // rounding forbids small h.
  for (const [v] of checks) {
    const base = v.dataSync().slice();
    // check the entry the loss is most sensitive to
    const g0 = tf.tidy(() => { const { value, grads } = tf.variableGrads(loss, [v]); value.dispose(); return Array.from(grads[v.name].dataSync()); });
    const idx = g0.reduce((best, g, i) => (Math.abs(g) > Math.abs(g0[best]) ? i : best), 0);
    const setTo = (x: number) => {
      const arr = base.slice();
      arr[idx] = x;
      v.assign(tf.tensor(arr, v.shape));
    };
    const gradAt = (x: number) => {
      setTo(x);
      const { value, grads } = tf.variableGrads(loss, [v]);
      const g = grads[v.name].dataSync()[idx];
      tf.dispose([value, ...Object.values(grads)]);
      return g;
    };
    const lossAt = (x: number) => {
      setTo(x);
      return tf.tidy(() => loss().dataSync()[0]);
    };
    const x = base[idx];
    const h = v.name.includes("edit_lrs") ? 0.2 * Math.abs(x) : 0.1;
    const simpson = (h / 3) * (gradAt(x - h) + 4 * gradAt(x) + gradAt(x + h));
    const diff = lossAt(x + h) - lossAt(x - h);
    v.assign(tf.tensor(base, v.shape));
    assert.ok(Math.abs(diff - simpson) <= 0.05 * Math.abs(diff) + 2e-6, `${v.name}[${idx}]: L(x+h) − L(x−h) = ${diff} but ∫ autodiff gradient = ${simpson}`);
    assert.ok(Math.abs(diff) > 1e-5, `${v.name}[${idx}]: the loss must actually depend on it (${diff})`);
  }
  pre.dispose();
  disposeFactors(f);
  [inner, outer, loc].forEach(disposeBatch);
  disposeEditor(e);
  disposeParams(m.params);
});
