/**
 * Single edits (each on the base model) of the first 20 facts of the seed-0 stream with the
 * UltraEdit-style rule on one weight: how many hold, paraphrases, steps, and the update's size
 * ‖ΔW‖ / ‖W‖ (the choice of the lifelong methods' default weight).
 *
 *   node experiments/lifelong/singleEdit.js --weight h.3.mlp.c_proj.weight [--eta 2] [--lambda 1]
 */
const path = require("path");
const tf = require("@tensorflow/tfjs");
const { flags, loadShipped } = require("../common");
const dist = (f) => require(path.join(__dirname, "..", "..", "dist", f));
const { World } = dist("world/world");
const { worldStream } = dist("eval/lifelong");
const { scoreTargets } = dist("model/score");
const { applyUpdates } = dist("model/paramsModel");
const L = dist("lifelong");

(async () => {
  const flag = flags();
  const { model } = await loadShipped();
  const weight = flag("weight", "h.3.mlp.c_proj.weight");
  const cfg = { weights: [weight], stepSize: Number(flag("eta", 2)), maxSteps: 12, minProb: 0.5 };
  const rule = L.ultraEditRule(Number(flag("lambda", 1)));
  const stream = worldStream(World.load(), 20, 0);
  const wn = tf.tidy(() => tf.norm(model.params[weight]).dataSync()[0]);
  let ok = 0, para = 0, np = 0, steps = 0, size = 0;
  for (const r of stream.edits) {
    const e = L.keyValueEdit(model, [{ prompt: r.prompts[0], target: r.target_new }], cfg, [rule], undefined);
    const m = applyUpdates(model, [e.update]);
    const s = scoreTargets(m, [{ prompt: r.prompts[0], target: r.target_new }, ...r.heldout_prompts.map((p) => ({ prompt: p, target: r.target_new }))]);
    ok += s[0].exact ? 1 : 0;
    s.slice(1).forEach((x) => { para += x.exact ? 1 : 0; np++; });
    steps += e.steps;
    const d = e.update[weight];
    size += tf.tidy(() => tf.norm(tf.matMul(tf.transpose(d.keys), d.values)).dataSync()[0]) / wn;
    m.dispose();
    tf.dispose([d.keys, d.values, ...Object.values(e.state ? e.state.tensors : {})]);
  }
  console.log(`${weight} η ${cfg.stepSize}: edits held ${ok / 20}, paraphrases ${(para / np).toFixed(3)}, steps ${steps / 20}, ‖ΔW‖/‖W‖ ${(size / 20).toFixed(3)}`);
})();
