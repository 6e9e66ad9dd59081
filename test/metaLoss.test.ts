import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { captureFactors, disposeBatch, disposeEditor, disposeFactors, disposeParams, editedWeights, editorVariables, locLoss, makeBatch, metaLoss, preEditLogits } from "../dist";
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

test("the meta-gradient matches central finite differences", async () => {
  await setup();
  const m = tinyModel(32);
  const e = warmEditor(m, 3);
  // Move off the identity init (U = 0 puts every pre-activation exactly at the clamp's kink).
  for (const net of Object.values(e.nets)) for (const l of net.layers) l.U.assign(tf.randomNormal(l.U.shape, 0, 0.05, "float32", 7));
  for (const v of Object.values(e.editLrs)) v.assign(tf.scalar(0.01)); // small edits: L is close to smooth-quadratic over ±h
  const inner = makeBatch(m.tokenizer, [{ prompt: "The president of the United States is", target: "Biden" }], "target", m.config.n_positions);
  const outer = makeBatch(m.tokenizer, [{ prompt: "The leader of the United States is", target: "Biden" }], "target", m.config.n_positions);
  const loc = makeBatch(m.tokenizer, [{ prompt: "The capital of Peru is", target: "Lima" }], "target", m.config.n_positions);
  const f = captureFactors(m.params, m.config, inner, e.config.innerParams);
  const pre = preEditLogits(m.params, m.config, loc);
  const loss = () => metaLoss(m.params, m.config, editedWeights(m.params, e, f), outer, loc, pre).total;
  const { net, editLrs } = editorVariables(e);
  const checks: [tf.Variable, number][] = [[editLrs[`edit_lrs.${e.config.innerParams[0]}`], 0], [net[`${Object.keys(e.nets)[0]}.0.bias`], 3], [net[`${Object.keys(e.nets)[1]}.1.mode_shift`], 5]];
  const { value, grads } = tf.variableGrads(loss, checks.map(([v]) => v));
  for (const [v, idx] of checks) {
    const g = grads[v.name].dataSync()[idx];
    const base = v.dataSync().slice();
    // float32: the step must be large enough to see ΔL, yet small against the curvature (α ± 10%).
    const h = v.name.includes("edit_lrs") ? 0.1 * Math.abs(base[idx]) : 2e-2;
    const at = (x: number) => {
      const arr = base.slice();
      arr[idx] = x;
      v.assign(tf.tensor(arr, v.shape));
      return tf.tidy(() => loss().dataSync()[0]);
    };
    const fd = (at(base[idx] + h) - at(base[idx] - h)) / (2 * h);
    v.assign(tf.tensor(base, v.shape));
    assert.ok(Math.abs(fd - g) <= 0.05 * Math.abs(g) + 1e-4, `${v.name}[${idx}]: autodiff ${g} vs finite difference ${fd}`);
  }
  tf.dispose([value, ...Object.values(grads), pre]);
  disposeFactors(f);
  [inner, outer, loc].forEach(disposeBatch);
  disposeEditor(e);
  disposeParams(m.params);
});
