#!/usr/bin/env node
/**
 * Batched MEND edits of k distinct facts per call, grouped two ways: consecutive in the split (about
 * k/5 subjects with all their relations, as `mend eval` does) and drawn at random (seed 0, as the
 * paper samples zsRE batches). Reports edit success on the edit prompts, held-out paraphrases and
 * the group's locality probes (unchanged argmax).
 *
 *   node experiments/batch-groups/run.js [--editor DIR] [--split test|val] [--k 25] [--n 5] [--beta B] [--batch-loss mean|sum]
 *
 * --beta sets the editor's batch key decorrelation β at edit time (it needs key preconditioning);
 * --batch-loss overrides how the call's losses combine (an editor trained on single edits has "mean").
 */
const { mend, flags, loadShipped } = require("../common");

async function main() {
  const flag = flags();
  const { model, editor } = await loadShipped(flag("editor"), "editor-batch");
  if (flag("beta") !== undefined) {
    const beta = Number(flag("beta"));
    if (!(beta > 0)) throw new Error(`--beta must be a number > 0, got "${flag("beta")}"`);
    const x = mend.extensionsOf(editor);
    if (!x?.precond) throw new Error("--beta: batch key decorrelation needs an editor with key preconditioning (trained with --key-precond)");
    mend.extendEditor(editor, { ...x.extensions, batchPrecond: beta }, x.precond);
  }
  if (!["mean", "sum", undefined].includes(flag("batch-loss"))) throw new Error(`--batch-loss must be "mean" or "sum", got "${flag("batch-loss")}"`);
  if (flag("batch-loss") !== undefined) {
    const x = mend.extensionsOf(editor);
    const { batchLoss: _old, ...rest } = x?.extensions ?? {};
    mend.extendEditor(editor, { ...rest, ...(flag("batch-loss") === "sum" ? { batchLoss: "sum" } : {}) }, x?.precond);
  }
  const records = mend.distinctFacts(mend.World.load().editRecords(flag("split", "test")));
  const k = Number(flag("k", "25"));
  const n = Number(flag("n", "5"));
  const right = (params, ex) => mend.scoreTargets({ ...model, params }, ex).filter((s) => s.exact).length;
  const run = (label, groups) => {
    const c = { es: 0, edits: 0, para: 0, paras: 0, loc: 0, locs: 0 };
    for (const group of groups) {
      const reqs = group.map((r) => ({ prompt: r.prompts[0], target: r.target_new }));
      const edited = new Set(group.map(mend.factKey));
      const locs = group.flatMap((r) => r.locality).filter((l) => !edited.has(mend.factKey(l))).map((l) => ({ prompt: l.prompt, target: l.target }));
      const paras = group.flatMap((r) => r.heldout_prompts.map((p) => ({ prompt: p, target: r.target_new })));
      const pre = mend.scoreTargets(model, locs);
      const e = mend.mendEdit(model, editor, reqs);
      c.es += right(e.params, reqs);
      c.edits += reqs.length;
      c.para += right(e.params, paras);
      c.paras += paras.length;
      c.loc += mend.scoreTargets({ ...model, params: e.params }, locs).filter((s, i) => mend.unchanged(pre[i].argmax, s.argmax)).length;
      c.locs += locs.length;
      mend.disposeEdit(e);
    }
    const subjects = groups.reduce((s, g) => s + new Set(g.map((r) => r.subject)).size, 0) / groups.length;
    console.log(`${label.padEnd(11)} k = ${k}, ${groups.length} calls, ${subjects.toFixed(1)} subjects per call: ES ${(c.es / c.edits).toFixed(3)}  held-out paraphrases ${(c.para / c.paras).toFixed(3)}  locality ${(c.loc / c.locs).toFixed(3)}`);
  };
  run("consecutive", Array.from({ length: Math.min(n, Math.floor(records.length / k)) }, (_, g) => records.slice(g * k, (g + 1) * k)));
  const rng = new mend.Rng(0);
  run("random", Array.from({ length: n }, () => rng.sample(records, k)));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
