import test from "node:test";
import { extendEditor } from "../dist/extensions/editorExtensions";
import assert from "node:assert/strict";
import { captureEditorFactors, disposeEdit, mendEdit } from "../dist/mend/edit";
import { countEditorParams, createEditor, DEFAULT_EDITOR_CONFIG, disposeEditor } from "../dist/mend/editor";
import { disposeFactors } from "../dist/mend/factor";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { disposeParams } from "../dist/model/gpt";
import { applyUpdates } from "../dist/model/paramsModel";
import { greedyContinuation, nextTokenTopK } from "../dist/model/score";
import { compareWithGradient, editorSizeTable, factorsByToken, topMovers } from "../dist/viz/inspect";
import { setup, tinyModel, warmEditor } from "./helpers";

const req = { prompt: "The president of the United States is", target: "Biden" };

test("compareWithGradient reads the gradient the edit uses: the same request twice doubles it under 'sum', not under 'mean'", async () => {
  await setup();
  const m = tinyModel(31);
  const e = warmEditor(m);
  const one = compareWithGradient(m, e, [req]);
  for (const [batchLoss, factor] of [["sum", 2], ["mean", 1]] as const) {
    extendEditor(e, batchLoss === "sum" ? { batchLoss } : {});
    const two = compareWithGradient(m, e, [req, req]);
    two.forEach((c, i) => {
      assert.equal(c.name, one[i].name);
      assert.equal(c.rows, 2 * one[i].rows, `${c.name}: both copies' rows are kept`);
      const ratio = c.rawNorm / one[i].rawNorm;
      assert.ok(Math.abs(ratio - factor) < 1e-3 * factor, `${batchLoss} ${c.name}: raw gradient x${ratio}, expected x${factor}`);
      assert.ok(c.cosine > -1 - 1e-6 && c.cosine < 1 + 1e-6 && c.pseudoNorm > 0);
    });
  }
  disposeEditor(e);
  disposeParams(m.params);
});

test("editorSizeTable: MEND's count is the count of a created one-mode editor; the dense editor is (d_in·d_out)²", async () => {
  await setup();
  const m = tinyModel(32);
  const name = "h.1.mlp.c_fc.weight";
  const [dIn, dOut] = m.params[name].shape;
  const e = createEditor({ ...DEFAULT_EDITOR_CONFIG, innerParams: [name], rank: 8 }, { [name]: [dIn, dOut] }, 0);
  const [row] = editorSizeTable([{ weight: name, dIn, dOut, rank: 8 }]);
  assert.equal(row.mend_editor + 1, countEditorParams(e), "the table's network plus the one α");
  assert.equal(row.dense_editor, (dIn * dOut) ** 2);
  assert.equal(row.gradient_entries, dIn * dOut);
  disposeEditor(e);
  m.dispose();
});

test("factorsByToken: one row per kept token row, shares sum to 1 per weight, tokens as the batch has them", async () => {
  await setup();
  const m = tinyModel(33);
  const e = warmEditor(m);
  const rows = factorsByToken(m, e, req);
  const b = makeBatch(m.tokenizer, [req], "target", m.config.n_positions);
  const f = captureEditorFactors(m.params, m.config, b, e);
  for (const n of e.config.innerParams) {
    const mine = rows.filter((r) => r.weight === n);
    assert.deepEqual(mine.map((r) => r.position), f.rows[n].map((r) => r % f.seqLen));
    assert.ok(Math.abs(mine.reduce((a, r) => a + r.share, 0) - 1) < 1e-5);
    assert.ok(mine.every((r) => r["‖ũ‖"] >= 0 && r["‖δ̃‖"] >= 0 && r["‖u‖"] > 0));
  }
  assert.equal(rows[rows.length - 1].token, "is", "the last kept row is the answer position");
  disposeFactors(f);
  disposeBatch(b);
  disposeEditor(e);
  m.dispose();
});

test("topMovers and greedyContinuation: nothing moves between a model and itself; generation follows the argmax", async () => {
  await setup();
  const m = tinyModel(34, { initializer_range: 0.3 });
  const same = topMovers(m, m, req.prompt, 3);
  assert.ok([...same.rose, ...same.fell].every((x) => x.change === 0));
  const e = warmEditor(m);
  const edit = mendEdit(m, e, [req]);
  const edited = applyUpdates(m, [edit.update]);
  const moved = topMovers(m, edited, req.prompt, 3);
  assert.ok(moved.rose[0].change >= moved.rose[2].change && moved.fell[0].change <= moved.fell[2].change);
  assert.ok(moved.rose[0].change > 0 && moved.fell[0].change < 0, "probability moves from some tokens to others");
  const [text] = greedyContinuation(m, [req.prompt], 4);
  const words = text.split(" ").filter(Boolean);
  assert.ok(words.length <= 4);
  const [top] = nextTokenTopK(m, [req.prompt], 1);
  if (top.top[0].token !== "<eos>") assert.equal(words[0], top.top[0].token, "the first generated token is the argmax");
  if (words.length > 1) assert.equal(words[1], nextTokenTopK(m, [`${req.prompt} ${words[0]}`], 1)[0].top[0].token);
  edited.dispose();
  disposeEdit(edit);
  disposeEditor(e);
  m.dispose();
});
