import test from "node:test";
import { extendEditor } from "../dist/extensions/editorExtensions";
import assert from "node:assert/strict";
import { disposeEditor } from "../dist/mend/editor";
import { disposeParams } from "../dist/model/gpt";
import { compareWithGradient } from "../dist/viz/inspect";
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
