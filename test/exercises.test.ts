/**
 * The tutorial's implement-it checks (src/viz/exercises.ts): each passes on a right answer (built
 * here from the library's own pieces), fails with a message naming the difference on a wrong one,
 * and leaves no tensor behind; the notebooks' HTML exports load nothing from the machine.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { captureEditorFactors } from "../dist/mend/edit";
import { applyEditor, netFor } from "../dist/mend/editor";
import { captureFactors, disposeFactors } from "../dist/mend/factor";
import { exampleMetaLoss } from "../dist/mend/metaLoss";
import { sampleMetaBatch } from "../dist/mend/metaExamples";
import { normalizeFactors } from "../dist/mend/stats";
import { pseudoGradient } from "../dist/mend/update";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { gptForward } from "../dist/model/gpt";
import { meanKl, meanNll } from "../dist/model/loss";
import { Rng } from "../dist/model/rng";
import { checkDeltaW, checkEditorForward, checkFactors, checkMetaLoss, todo, type MyMetaLoss } from "../dist/viz/exercises";
import { getWorld, ROOT, setup, tinyModel, warmEditor } from "./helpers";

const request = { prompt: "The capital of France is", target: "Rome" };

test("exercise checks: the TODO stub, a right and a wrong factor capture", async () => {
  await setup();
  const m = tinyModel(2);
  const names = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"];
  const batch = makeBatch(m.tokenizer, [request], "target", m.config.n_positions);
  const before = tf.memory().numTensors;
  assert.throws(() => checkFactors(m, batch, names, () => todo("myFactors")), /TODO: myFactors is not written yet/);
  // right: the library's capture with every row kept (a row selector that keeps all B·T rows)
  const all = (p: typeof m.params, c: typeof m.config, b: typeof batch, ns: readonly string[]) => {
    const N = b.inputIds.size;
    const f = captureFactors(p, c, b, ns, undefined, "structural", () => Object.fromEntries(ns.map((n) => [n, Array.from({ length: N }, (_, i) => i)])));
    return { u: f.u, delta: f.delta };
  };
  const lines = checkFactors(m, batch, names, all);
  assert.equal(lines.length, 3 * names.length);
  // wrong: δ twice too large (a sum instead of a mean over the target's tokens, say)
  assert.throws(
    () => checkFactors(m, batch, names, (p, c, b, ns) => {
      const r = all(p, c, b, ns);
      const delta = Object.fromEntries(Object.entries(r.delta).map(([n, d]) => [n, tf.mul(d, 2)]));
      tf.dispose(Object.values(r.delta));
      return { u: r.u, delta };
    }),
    /δ of h\.1\.mlp\.c_fc\.weight: max \|yours − library\|/,
  );
  // wrong shape: only the kept rows
  assert.throws(() => checkFactors(m, batch, names, (p, c, b, ns) => {
    const f = captureFactors(p, c, b, ns);
    return { u: f.u, delta: f.delta };
  }), /has shape \[\d+,\d+\], expected \[/);
  assert.equal(tf.memory().numTensors, before, "the checks free what they and the student's functions made");
  disposeBatch(batch);
  m.dispose();
});

test("exercise checks: editor forward and ΔW, right and wrong", async () => {
  await setup();
  const m = tinyModel(3);
  const e = warmEditor(m, 1);
  const batch = makeBatch(m.tokenizer, [request], "target", m.config.n_positions);
  const f = captureEditorFactors(m.params, m.config, batch, e);
  const right = (ed: typeof e, n: string, u: tf.Tensor2D, d: tf.Tensor2D) =>
    tf.tidy(() => {
      const { uBar, deltaBar } = normalizeFactors(netFor(ed, n).net.stats, u, d);
      return applyEditor(ed, n, uBar, deltaBar);
    });
  assert.equal(checkEditorForward(e, f, right).length, 2 * e.config.innerParams.length);
  const before = tf.memory().numTensors; // after the first use, which caches the statistics' σ + 1e-7
  assert.equal(checkEditorForward(e, f, right).length, 2 * e.config.innerParams.length);
  assert.throws(() => checkEditorForward(e, f, (ed, n, u, d) => tf.tidy(() => applyEditor(ed, n, u, d))), /ũ of .*: max \|yours − library\|.*ū = \(u − mean\)/);
  assert.throws(() => checkEditorForward(e, f, (ed, n, u, d) => ({ uTilde: tf.add(u, 0), deltaTilde: tf.zeros([1, 1]) })), /has shape \[1,1\], expected/);
  const alphaTimes = (ed: typeof e, n: string, ut: tf.Tensor2D, dt: tf.Tensor2D) => tf.mul(ed.editLrs[n], pseudoGradient(ut, dt));
  // α is the official initial 1e-4 here: without it ΔW is 1e4 times too large
  assert.equal(checkDeltaW(m, e, f, alphaTimes).length, e.config.innerParams.length);
  assert.throws(() => checkDeltaW(m, e, f, (_ed, _n, ut, dt) => pseudoGradient(ut, dt)), /ΔW of .*: max \|yours − library\|.*editor\.editLrs/);
  assert.equal(tf.memory().numTensors, before);
  disposeFactors(f);
  disposeBatch(batch);
  m.dispose();
});

test("exercise checks: the meta-loss and its gradient, right and wrong", async () => {
  await setup();
  const m = tinyModel(4);
  const e = warmEditor(m, 2);
  const [x] = sampleMetaBatch(getWorld().editRecords("train"), new Rng(3), 1);
  const batchOf = (r: { prompt: string; target: string }) => makeBatch(m.tokenizer, [r], "target", m.config.n_positions);
  const loss = (cEdit: number): MyMetaLoss => (model, ed, ex, factors) => {
    const edited: Record<string, tf.Tensor> = {};
    for (const n of ed.config.innerParams) {
      const { uBar, deltaBar } = normalizeFactors(netFor(ed, n).net.stats, factors.u[n], factors.delta[n]);
      const { uTilde, deltaTilde } = applyEditor(ed, n, uBar, deltaBar);
      edited[n] = tf.add(model.params[n], tf.mul(ed.editLrs[n], pseudoGradient(uTilde, deltaTilde)));
    }
    const logits = (b: ReturnType<typeof batchOf>, replace = {}) => gptForward(model.params, model.config, b.inputIds, { attentionMask: b.attentionMask, replace }).logits;
    const [outer, loc] = [batchOf(ex.editOuter), batchOf(ex.loc)];
    return tf.add(tf.mul(cEdit, meanNll(logits(outer, edited), outer.labels)), meanKl(logits(loc), logits(loc, edited), loc.attentionMask)) as tf.Scalar;
  };
  exampleMetaLoss(m, e, x); // caches the statistics' σ + 1e-7
  const before = tf.memory().numTensors;
  const lines = checkMetaLoss(m, e, x, loss(0.1));
  assert.match(lines[0], /meta-loss: yours/);
  assert.match(lines[1], /gradients of all \d+ editor tensors/);
  // c_edit = 1 changes the value (unless L_edit were 0): the check names the two terms
  if (exampleMetaLoss(m, e, x).lEdit > 1e-3) assert.throws(() => checkMetaLoss(m, e, x, loss(1)), /L = 0\.1 L_edit \+ 1 L_loc/);
  assert.throws(() => checkMetaLoss(m, e, x, () => todo("myMetaLoss")), /TODO: myMetaLoss/);
  assert.equal(tf.memory().numTensors, before);
  m.dispose();
});

test("notebook exports load nothing from the machine that opens them", () => {
  const dir = path.join(ROOT, "docs", "notebooks");
  const pages = fs.readdirSync(dir).filter((n) => n.endsWith(".html"));
  assert.ok(pages.length >= 13, "every notebook has an export");
  for (const page of pages) {
    const html = fs.readFileSync(path.join(dir, page), "utf8");
    const local = html.match(/(?:src|href)=["'](?:file:[^"']*|\/[^/"'][^"']*)["']/g);
    assert.equal(local, null, `${page} refers to local files: ${local?.slice(0, 3).join(", ")}`);
  }
});
