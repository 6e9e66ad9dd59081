/**
 * The notebooks' session (src/viz/notebook.ts): after the clean-up, model and editor handles load
 * again, kept values answer with a one-line error naming the cell to run, and nothing leaks.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { mendEdit, disposeEdit } from "../dist/mend/edit";
import { disposeEditor } from "../dist/mend/editor";
import { saveEditor } from "../dist/mend/editorFolder";
import { saveModel } from "../dist/model/modelFolder";
import { applyUpdates, ParamsModel } from "../dist/model/paramsModel";
import { nextTokenTopK } from "../dist/model/score";
import { NotebookError, NotebookSession } from "../dist/viz/notebook";
import { setup, tinyModel, warmEditor } from "./helpers";

test("notebook session: handles reload after the clean-up, kept values say which cell to run, nothing leaks", async () => {
  await setup();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mend-nb-"));
  const m = tinyModel(3);
  const e = warmEditor(m, 1);
  saveModel(path.join(dir, "model"), m);
  saveEditor(path.join(dir, "editor"), e, m.config, m.params);
  const request = { prompt: "The capital of France is", target: "Rome" };

  const nb = new NotebookSession();
  const model = nb.model(path.join(dir, "model"));
  const editor = nb.editor(path.join(dir, "editor"), model);
  assert.equal(nb.model(path.join(dir, "model")), model, "one handle per folder");
  assert.ok(model instanceof ParamsModel);
  const before = nextTokenTopK(model, [request.prompt], 1)[0].top[0];
  const edit = nb.keep("edit", mendEdit(model, editor, [request]), disposeEdit);
  const edited = nb.keep("edited", applyUpdates(model, [edit.update]), (x) => x.dispose());
  const after = nextTokenTopK(edited, [request.prompt], 1)[0].top[0];
  // running the cell again replaces (and frees) what it made before
  const tensors = tf.memory().numTensors;
  const again = nb.keep("edit", mendEdit(model, editor, [request]), disposeEdit);
  assert.equal(tf.memory().numTensors, tensors, "re-running a cell frees its earlier value");

  const { freed } = nb.cleanup();
  assert.deepEqual(freed.sort(), ["edit", "edited"]);
  assert.ok(Object.values(m.params).every((t) => !t.isDisposed), "the session frees only what it loaded");
  // kept values: one line naming the variable and the cell
  assert.throws(() => again.update, (err: unknown) => err instanceof NotebookError && /`edit` was freed by the clean-up cell: run the cell that makes it/.test(err.message) && !String(err.stack).includes("\n"));
  assert.throws(() => nextTokenTopK(edited, [request.prompt], 1), /`edited` was freed/);
  // handles: the same answers after loading again
  const reloaded = nextTokenTopK(model, [request.prompt], 1)[0].top[0];
  assert.deepEqual(reloaded, before);
  const edit2 = mendEdit(model, editor, [request]);
  const edited2 = applyUpdates(model, [edit2.update]);
  assert.deepEqual(nextTokenTopK(edited2, [request.prompt], 1)[0].top[0], after);
  disposeEdit(edit2);
  edited2.dispose();
  // the clean-up frees the reloaded model and editor: loading, editing and cleaning up again is flat
  nb.cleanup();
  const floor = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    const x = nb.keep("x", mendEdit(model, editor, [request]), disposeEdit);
    assert.ok(x.update);
    nb.cleanup();
  }
  assert.equal(tf.memory().numTensors, floor, "load, edit and clean up three times: flat");
  // derived values are made again on their next use after the clean-up, dependencies included
  const dEdit = nb.derive("dEdit", () => mendEdit(model, editor, [request]), disposeEdit);
  const dModel = nb.derive("dModel", () => applyUpdates(model, [dEdit.update]), (x) => x.dispose());
  const first = nextTokenTopK(dModel, [request.prompt], 1)[0].top[0];
  assert.deepEqual(nb.cleanup().freed.sort(), ["dEdit", "dModel"]);
  assert.deepEqual(nextTokenTopK(dModel, [request.prompt], 1)[0].top[0], first, "made again after the clean-up");
  assert.deepEqual(nb.cleanup().freed.sort(), ["dEdit", "dModel"], "and freed again by the next clean-up");
  assert.equal(tf.memory().numTensors, floor);
  disposeEditor(e);
  m.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
