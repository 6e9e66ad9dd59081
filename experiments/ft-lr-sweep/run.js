#!/usr/bin/env node
/**
 * The FT baseline's learning rate: edit success, held-out paraphrases, locality unchanged and steps
 * to success for several lrs (Adam, or the official code's RMSprop), on one split's edits (validation by default, so the choice of lr
 * does not look at the test split).
 *
 *   node experiments/ft-lr-sweep/run.js [--split val] [--lrs 1e-4,3e-4,4e-4,5e-4,1e-3] [--optimizer rmsprop|adam] [--editor DIR]
 *
 * FT tunes the weights that the editor (default checkpoints/editor) edits.
 */
const { mend, flags, loadShipped } = require("../common");

async function main() {
  const flag = flags();
  const { model, editor } = await loadShipped(flag("editor"));
  const innerParams = [...editor.config.innerParams]; // FT tunes the weights MEND edits
  mend.disposeEditor(editor);
  const split = flag("split", "val");
  const records = mend.World.load().editRecords(split);
  const optimizer = flag("optimizer", mend.DEFAULT_FT_CONFIG.optimizer);
  console.log(`FT (${optimizer}, <= ${mend.DEFAULT_FT_CONFIG.maxSteps} steps, stop at argmax) on ${records.length} ${split} edits of ${innerParams.join(", ")}`);
  console.log("| lr | ES | held-out paraphrases | locality unchanged | steps | ms |\n|---|---|---|---|---|---|");
  for (const lr of flag("lrs", "1e-4,3e-4,4e-4,5e-4,1e-3").split(",").map(Number)) {
    const n = { es: 0, para: 0, nPara: 0, loc: 0, nLoc: 0, steps: 0, ms: 0 };
    for (const r of records) {
      const e = mend.fineTuneEdit(model, [{ prompt: r.prompts[0], target: r.target_new }], { ...mend.DEFAULT_FT_CONFIG, lr, optimizer, innerParams, cEdit: null, locTexts: [] });
      const loc = r.locality.map((l) => ({ prompt: l.prompt, target: l.target }));
      const pre = mend.scoreTargets(model, loc);
      const post = { ...model, params: e.params };
      n.es += mend.scoreTargets(post, [{ prompt: r.prompts[0], target: r.target_new }])[0].exact ? 1 : 0;
      const para = mend.scoreTargets(post, r.heldout_prompts.map((p) => ({ prompt: p, target: r.target_new })));
      n.para += para.filter((s) => s.exact).length;
      n.nPara += para.length;
      mend.scoreTargets(post, loc).forEach((s, i) => (n.loc += s.argmax.join() === pre[i].argmax.join() ? 1 : 0));
      n.nLoc += loc.length;
      n.steps += e.steps;
      n.ms += e.latencyMs;
      mend.disposeMethodEdit(e);
    }
    const k = records.length;
    console.log(`| ${lr} | ${(n.es / k).toFixed(3)} | ${(n.para / n.nPara).toFixed(3)} | ${(n.loc / n.nLoc).toFixed(3)} | ${(n.steps / k).toFixed(1)} | ${(n.ms / k).toFixed(0)} |`);
  }
  mend.disposeParams(model.params);
}

main().catch((e) => {
  console.error(`ft-lr-sweep: ${e.message}`);
  process.exit(1);
});
