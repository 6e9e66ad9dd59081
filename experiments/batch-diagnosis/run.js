#!/usr/bin/env node
/**
 * Why batched MEND edits fail with a single-edit editor: k test edits applied
 *   (a) as one edit call with the editor's own batch loss (official: one token-mean, so each
 *       request's δ is 1/k of its single-edit value), and
 *   (b) as the sum of the k single-edit updates (what batchLoss "sum" computes),
 * reporting edit success on the edit prompts and accuracy on the locality probes of the group;
 * then, for the one-call edit, what the failed edit prompts answer at the first target token (the
 * right token with a later one wrong, their old answer, another co-edited fact's new target, of the
 * same relation or not, or something else),
 * and edit success with the edit lrs α scaled (too weak an update would recover with a larger α;
 * interference between the k updates would not).
 *
 *   node experiments/batch-diagnosis/run.js [--editor DIR] [--k 5,25] [--scales 0.5,1,2]
 */
const tf = require("@tensorflow/tfjs");
const { mend, flags, loadShipped } = require("../common");

async function main() {
  const flag = flags();
  const { model, editor } = await loadShipped(flag("editor"));
  const records = mend.World.load().editRecords("test");
  const acc = (params, examples) => mend.scoreTargets({ ...model, params }, examples).filter((s) => s.exact).length;
  const first = (text) => model.tokenizer.encode(text)[0]; // first token id of a target
  const scales = flag("scales", "0.5,1,2").split(",").map(Number);
  for (const k of flag("k", "5,25").split(",").map(Number)) {
    const n = { edits: 0, loc: 0, aEs: 0, aLoc: 0, bEs: 0, bLoc: 0 };
    const fails = { laterToken: 0, old: 0, coEditSameRelation: 0, coEditOtherRelation: 0, other: 0 };
    const scaledEs = scales.map(() => 0);
    for (let s = 0; s + k <= records.length; s += k) {
      const group = records.slice(s, s + k);
      const reqs = group.map((r) => ({ prompt: r.prompts[0], target: r.target_new }));
      const edited = new Set(group.map(mend.factKey));
      const locs = group.flatMap((r) => r.locality).filter((l) => !edited.has(mend.factKey(l))).map((l) => ({ prompt: l.prompt, target: l.target }));
      const call = mend.mendEdit(model, editor, reqs);
      n.aEs += acc(call.params, reqs);
      n.aLoc += acc(call.params, locs);
      mend.scoreTargets({ ...model, params: call.params }, reqs).forEach((s, i) => {
        if (s.exact) return;
        const answer = s.argmax[0];
        const other = group.findIndex((g, j) => j !== i && first(g.target_new) === answer);
        if (answer === first(group[i].target_new)) fails.laterToken++; // first target token right, a later one wrong
        else if (answer === first(group[i].target_true)) fails.old++;
        else if (other < 0) fails.other++;
        else if (group[other].relation === group[i].relation) fails.coEditSameRelation++;
        else fails.coEditOtherRelation++;
      });
      mend.disposeEdit(call);
      scales.forEach((scale, i) => {
        const e = mend.mendEdit(model, editor, reqs, { lrScale: scale });
        scaledEs[i] += acc(e.params, reqs);
        mend.disposeEdit(e);
      });
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
    console.log(`k = ${k} (${n.edits} edits): one call (batchLoss ${mend.extensionsOf(editor)?.extensions.batchLoss ?? "mean"}) ES ${f(n.aEs, n.edits)}, locality acc ${f(n.aLoc, n.loc)} | sum of single edits ES ${f(n.bEs, n.edits)}, locality acc ${f(n.bLoc, n.loc)}`);
    console.log(`  failed edit prompts of the one call answer: ${JSON.stringify(fails)}`);
    console.log(`  one call with α scaled: ${scales.map((sc, i) => `×${sc} ES ${f(scaledEs[i], n.edits)}`).join(", ")}`);
  }
  mend.disposeEditor(editor);
  mend.disposeParams(model.params);
}

main().catch((e) => {
  console.error(`batch-diagnosis: ${e.message}`);
  process.exit(1);
});
