#!/usr/bin/env node
/**
 * Why batched MEND edits fail with a single-edit editor: k test edits applied
 *   (a) as one edit call with the editor's own batch loss (official: one token-mean, so each
 *       request's δ is 1/k of its single-edit value), and
 *   (b) as the sum of the k single-edit updates (what batchLoss "sum" computes),
 * reporting edit success on the edit prompts and accuracy on the locality probes of the group.
 *
 *   node scripts/batch-diagnosis.js [--editor DIR] [--k 5,25]
 */
const path = require("path");
const tf = require("@tensorflow/tfjs");
const mend = require(path.join(__dirname, "..", "dist"));

async function main() {
  const args = process.argv.slice(2);
  const flag = (name, d) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : d);
  await mend.initBackend();
  const root = path.join(__dirname, "..");
  const model = mend.loadModel(path.join(root, "checkpoints", "base"));
  const editor = mend.loadEditor(flag("editor", path.join(root, "checkpoints", "editor")), model.config, model.params);
  const records = mend.World.load().editRecords("test");
  const acc = (params, examples) => mend.scoreTargets({ ...model, params }, examples).filter((s) => s.exact).length;
  for (const k of flag("k", "5,25").split(",").map(Number)) {
    const n = { edits: 0, loc: 0, aEs: 0, aLoc: 0, bEs: 0, bLoc: 0 };
    for (let s = 0; s + k <= records.length; s += k) {
      const group = records.slice(s, s + k);
      const reqs = group.map((r) => ({ prompt: r.prompts[0], target: r.target_new }));
      const edited = new Set(group.map((r) => `${r.subject}|${r.relation}`));
      const locs = group.flatMap((r) => r.locality).filter((l) => !edited.has(`${l.subject}|${l.relation}`)).map((l) => ({ prompt: l.prompt, target: l.target }));
      const call = mend.mendEdit(model, editor, reqs);
      n.aEs += acc(call.params, reqs);
      n.aLoc += acc(call.params, locs);
      mend.disposeEdit(call);
      const summed = {};
      for (const name of editor.config.innerParams) summed[name] = tf.clone(model.params[name]);
      for (const r of reqs) {
        const one = mend.mendEdit(model, editor, [r]);
        for (const name of editor.config.innerParams) {
          const next = tf.tidy(() => tf.add(summed[name], tf.sub(one.edited[name], model.params[name])));
          summed[name].dispose();
          summed[name] = next;
        }
        mend.disposeEdit(one);
      }
      n.bEs += acc({ ...model.params, ...summed }, reqs);
      n.bLoc += acc({ ...model.params, ...summed }, locs);
      tf.dispose(Object.values(summed));
      n.edits += k;
      n.loc += locs.length;
    }
    const f = (x, d) => (x / d).toFixed(3);
    console.log(`k = ${k} (${n.edits} edits): one call (batchLoss ${editor.config.batchLoss ?? "mean"}) ES ${f(n.aEs, n.edits)}, locality acc ${f(n.aLoc, n.loc)} | sum of single edits ES ${f(n.bEs, n.edits)}, locality acc ${f(n.bLoc, n.loc)}`);
  }
  mend.disposeEditor(editor);
  mend.disposeParams(model.params);
}

main().catch((e) => {
  console.error(`batch-diagnosis: ${e.message}`);
  process.exit(1);
});
