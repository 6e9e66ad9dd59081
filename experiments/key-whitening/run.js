#!/usr/bin/env node
/**
 * How local can a one-layer gradient edit be, and what does the key do? For each edit of the split:
 * the gradient of the edit loss w.r.t. one weight, from the target rows only, G = Σ_i u_i δ_iᵀ, is
 * applied as W − η G with
 *   plain: the key u_i as it is (a single tuned gradient step), or
 *   white: the key C⁻¹ u_i, C = E[u uᵀ] over the training prompts' answer positions plus a ridge
 *          λ·tr(C)/d (ROME's key covariance; `keySecondMoments`, `ridgeInverse` of src/extensions/keyPrecond.ts),
 *          rescaled so that u_i·key = u_i·u_i: the edit prompt
 *          itself sees exactly the same update, only other prompts see less of it.
 * `--rows subject` takes the gradient from the subject's token rows instead of the target rows
 * (ROME's position; `subject-last`: the subject's last token only).
 * η is the smallest step that makes the edit prompt right (bisection), times --margin. Reports edit
 * success, held-out paraphrases and locality per class, with the same-relation probes that share
 * the edited fact's old answer apart ("same answer"; the rest is "same relation" here).
 *
 *   node experiments/key-whitening/run.js [--layer h.3.mlp.c_proj.weight] [--lam 1] [--margin 1.5] [--split test|val] [--limit N]
 *                                 [--rows target|subject|subject-last] [--modes plain,white] [--model DIR]
 */
const path = require("path");
const tf = require("@tensorflow/tfjs");
const { mend, ROOT, flags, subjectFinder } = require("../common");

async function main() {
  const flag = flags();
  const layer = flag("layer", "h.3.mlp.c_proj.weight");
  const lam = Number(flag("lam", "1"));
  const margin = Number(flag("margin", "1.5"));
  const rows = flag("rows", "target");
  if (!["target", "subject", "subject-last"].includes(rows)) throw new Error(`--rows: "${rows}" is not target, subject or subject-last`);
  await mend.initBackend();
  const model = mend.loadModel(flag("model", path.join(ROOT, "checkpoints", "base")));
  if (!model.params[layer]) throw new Error(`--layer: "${layer}" is not a weight of the base model`);
  const world = mend.World.load();
  const trainPrompts = [...new Set(world.editRecords("train", { perFact: 1 }).flatMap((r) => r.prompts))];
  const d = model.params[layer].shape[0];
  const P = mend.ridgeInverse(mend.keySecondMoments(model, [layer], trainPrompts)[layer], d, lam); // s (C + λsI)⁻¹, symmetric
  const precondition = (u) => Array.from({ length: d }, (_, i) => { let v = 0; for (let j = 0; j < d; j++) v += P[i * d + j] * u[j]; return v; });
  const records = world.editRecords(flag("split", "test")).slice(0, Number(flag("limit", "100000")));
  const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
  const subjectSpan = subjectFinder(model.tokenizer, world);
  for (const mode of flag("modes", "plain,white").split(",")) {
    const n = { es: 0, para: [0, 0], loc: {}, none: 0 };
    for (const r of records) {
      const req = { prompt: r.prompts[0], target: r.target_new };
      const b = mend.makeBatch(model.tokenizer, [req], "target", model.config.n_positions);
      const T = b.inputIds.shape[1];
      const f = mend.captureFactors(model.params, model.config, b, [layer], undefined, "structural", rows === "target" ? mend.targetRows : undefined);
      mend.disposeBatch(b);
      const span = subjectSpan(req.prompt);
      const keep = f.rows[layer].map((r) => rows === "target" || (r % T < span.end && (rows === "subject" ? r % T >= span.start : r % T === span.end - 1)));
      const u = f.u[layer].arraySync().filter((_, i) => keep[i]);
      const delta = f.delta[layer].arraySync().filter((_, i) => keep[i]);
      mend.disposeFactors(f);
      if (u.length === 0) throw new Error(`${layer} has no gradient at the ${rows} rows of "${req.prompt}" (the last block has only the answer rows)`);
      const keys = mode === "plain" ? u : u.map((ui) => { const k = precondition(ui); const s = dot(ui, ui) / dot(ui, k); return Array.from(k, (x) => x * s); });
      const G = tf.tidy(() => tf.matMul(tf.transpose(tf.tensor2d(keys)), tf.tensor2d(delta))); // [d_in, d_out]
      const withStep = (eta) => ({ ...model, params: { ...model.params, [layer]: tf.tidy(() => tf.sub(model.params[layer], tf.mul(eta, G))) } });
      const right = (eta) => { const m = withStep(eta); const ok = mend.scoreTargets(m, [req])[0].exact; m.params[layer].dispose(); return ok; };
      let lo = 0, hi = 1;
      while (!right(hi) && hi < 1e7) [lo, hi] = [hi, hi * 2];
      if (!right(hi)) n.none++; // no step up to 1e7 makes it right: the largest one is scored
      for (let it = 0; it < 12; it++) { const mid = (lo + hi) / 2; if (right(mid)) hi = mid; else lo = mid; }
      const post = withStep(hi * margin);
      const ex = [req, ...r.heldout_prompts.map((p) => ({ prompt: p, target: r.target_new })), ...r.locality.map((l) => ({ prompt: l.prompt, target: l.target }))];
      const pre = mend.scoreTargets(model, ex);
      const s = mend.scoreTargets(post, ex);
      n.es += s[0].exact ? 1 : 0;
      r.heldout_prompts.forEach((_, i) => { n.para[0]++; n.para[1] += s[1 + i].exact ? 1 : 0; });
      r.locality.forEach((l, i) => {
        const c = mend.sharesOldAnswer(r, l) ? "same answer" : l.class.replace("_", " ");
        const j = 1 + r.heldout_prompts.length + i;
        n.loc[c] ??= [0, 0];
        n.loc[c][0]++;
        n.loc[c][1] += mend.unchanged(pre[j].argmax, s[j].argmax) ? 1 : 0;
      });
      tf.dispose([post.params[layer], G]);
    }
    const locAll = Object.values(n.loc).reduce((a, v) => [a[0] + v[0], a[1] + v[1]], [0, 0]);
    console.log(`${layer} ${rows} rows λ ${lam} margin ${margin} ${mode.padEnd(5)}  no right step ${n.none}  ES ${(n.es / records.length).toFixed(3)}  held-out paraphrases ${(n.para[1] / n.para[0]).toFixed(3)}  locality ${(locAll[1] / locAll[0]).toFixed(3)}  ` +
      Object.entries(n.loc).sort().map(([c, v]) => `${c} ${(v[1] / v[0]).toFixed(3)} (${v[0]})`).join("  "));
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
