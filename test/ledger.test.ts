/** The edit ledger and state across edits: updates and a method's state saved, restored, checked, removed. */
import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { disposeMethodEdit, mendMethod } from "../dist/eval/methods";
import { disposeEditor } from "../dist/mend/editor";
import type { UpdateRule } from "../dist/mend/hooks";
import { EditLedger } from "../dist/model/editLedger";
import { EditedModel } from "../dist/model/languageModel";
import { applyUpdates, ParamsModel, replaceModel } from "../dist/model/paramsModel";
import { denseDelta } from "../dist/model/weightUpdate";
import { disposeParams } from "../dist/model/gpt";
import { leaked, maxAbsDiff, setup, tinyModel, warmEditor } from "./helpers";

/**
 * A stand-in update rule with state: each edit's step is α / (1 + n) for the n edits before it, and
 * the state collects the keys of every edit of the first edited weight.
 */
const countingRule: UpdateRule = ({ update, state }) => {
  const n = (state?.meta.edits as number | undefined) ?? 0;
  const first = Object.keys(update)[0];
  const seen = state?.tensors.seen;
  const next = seen ? tf.concat([seen, update[first].keys]) : tf.clone(update[first].keys);
  const scaled = Object.fromEntries(Object.entries(update).map(([k, d]) => [k, { ...d, alpha: d.alpha / (1 + n) }]));
  return { update: scaled, state: { method: "counting", meta: { edits: n + 1 }, tensors: { seen: next } } };
};

const reqs = [
  { prompt: "The president of the United States is", target: "Biden" },
  { prompt: "The capital of Peru is", target: "Santiago" },
  { prompt: "Biden was born in", target: "Kenya" },
  { prompt: "The president of France is", target: "Merkel" },
];

test("state across edits: a replaced update rule carries state from one edit to the next, saved and restored with the ledger", async () => {
  await setup();
  const m = tinyModel(61);
  const e = warmEditor(m);
  const method = mendMethod(e, "MEND-counting", null, countingRule);
  const run = async () => {
    const ledger = EditLedger.start(m);
    let cur: EditedModel = m;
    for (const q of reqs.slice(0, 3)) {
      const r = method.edit(cur, [q]);
      ledger.add({ method: method.name, requests: [q], update: r.update!, state: r.state, latencyMs: r.latencyMs });
      if (cur !== m) replaceModel(cur, r.model);
      cur = r.model;
    }
    const last = cur as ParamsModel;
    assert.equal(last.state?.meta.edits, 3, "the state counted three edits");
    assert.equal(last.state?.method, "MEND-counting");
    const rows = ledger.entries.reduce((a, x) => a + (x.update[e.config.innerParams[0]] as { keys: tf.Tensor }).keys.shape[0], 0);
    assert.equal(last.state!.tensors.seen.shape[0], rows, "the state holds every edit's keys");
    // The rule ran: the third edit's α is the official α / 3.
    assert.ok(Math.abs((ledger.entries[2].update[e.config.innerParams[0]] as { alpha: number }).alpha - e.editLrs[e.config.innerParams[0]].dataSync()[0] / 3) < 1e-12);

    // Saved and restored: the same weights, the same state, and the next edit is the same.
    const files = ledger.files();
    const back = EditLedger.fromFiles(files, m, "saved", last.params);
    const restored = back.model();
    for (const n of e.config.innerParams) assert.equal(maxAbsDiff(restored.params[n], last.params[n]), 0, n);
    assert.deepEqual(restored.state?.meta, last.state?.meta);
    assert.equal(maxAbsDiff(restored.state!.tensors.seen, last.state!.tensors.seen), 0);
    const [a, b] = [method.edit(last, [reqs[3]]), method.edit(restored, [reqs[3]])];
    assert.equal(a.state?.meta.edits, 4);
    for (const n of e.config.innerParams) assert.equal(tf.tidy(() => maxAbsDiff(denseDelta(a.update![n]), denseDelta(b.update![n]))), 0, `next edit of ${n}`);
    [a, b].forEach(disposeMethodEdit);

    // Checked against the weights: a changed weight or another base is refused.
    const tampered = { ...last.params, [e.config.innerParams[0]]: tf.add(last.params[e.config.innerParams[0]], 1e-3) };
    assert.throws(() => EditLedger.fromFiles(files, m, "saved", tampered), /"h\.\d\.mlp\.c_fc\.weight" is not W0 plus the recorded edits/);
    tampered[e.config.innerParams[0]].dispose();
    const other = tinyModel(62);
    assert.throws(() => EditLedger.fromFiles(files, other, "saved"), /made to the base model with fingerprint/);
    disposeParams(other.params);

    // Removing edit 2 recomputes W0 + ΔW1 + ΔW3 from W0.
    const [u1, u3] = [back.entries[0].update, back.entries[2].update];
    const expected = applyUpdates(m, [u1, u3]);
    back.remove(2);
    assert.deepEqual(back.entries.map((x) => x.id), [1, 3]);
    const without = back.model();
    for (const n of e.config.innerParams) assert.equal(maxAbsDiff(without.params[n], expected.params[n]), 0, n);
    assert.throws(() => back.remove(2), /no edit 2 in the ledger \(edits: 1, 3\)/);
    [expected, without, restored, last].forEach((x) => x.dispose());
    back.dispose();
    ledger.dispose();
  };
  await run(); // the editor's cached constants are built on the first run
  assert.equal(await leaked(run), 0, "no tensor left behind");
  disposeEditor(e);
  disposeParams(m.params);
});
