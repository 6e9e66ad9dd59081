/**
 * The lifelong methods' settings on the facts world's stream: one method at a time, N edits, with
 * options overriding DEFAULT_LIFELONG (src/lifelong/index.ts), printing the benchmark's points.
 *
 *   node experiments/lifelong/sweep.js --edits 100 --methods AlphaEdit --options '{"alphaCovariance":1000}' [--seed 0] [--every 20] [--weights h.2.mlp.c_proj.weight,h.3.mlp.c_proj.weight]
 */
const path = require("path");
const tf = require("@tensorflow/tfjs");
const { flags, loadShipped } = require("../common");
const dist = (f) => require(path.join(__dirname, "..", "..", "dist", f));
const { World } = dist("world/world");
const { buildMethods } = dist("eval/methods");
const { worldStream, runLifelong } = dist("eval/lifelong");

(async () => {
  const flag = flags();
  const { model, editor } = await loadShipped();
  const n = Number(flag("edits", 100));
  const stream = worldStream(World.load(), n, Number(flag("seed", 0)));
  const names = flag("methods", "UltraEdit,AlphaEdit,LocFT-BF").split(",");
  const options = JSON.parse(flag("options", "{}"));
  const methods = buildMethods(names, { editor, locTexts: stream.preserve.slice(0, 16), lifelong: { model, ...(flag("weights", "") ? { weights: flag("weights", "").split(",") } : {}), preserve: stream.preserve, options } });
  for (const m of methods) {
    const c = runLifelong(model, m, stream, Number(flag("every", Math.max(10, n / 5))));
    for (const p of c.points) console.log(`${m.name} ${p.edits} retention ${p.retention.toFixed(3)} paraphrase ${p.paraphrase.toFixed(3)} locality ${p.locality.overall.toFixed(3)} same-subject ${p.locality.same_subject.toFixed(3)} acc_dd ${p.acc_dd.toFixed(3)} growth ${p.weight_growth.toFixed(3)}`);
    console.log(`${m.name}: ${c.edits_per_sec.toFixed(1)} edits/s, ${c.seconds.toFixed(1)} s; tensors ${tf.memory().numTensors}`);
    m.dispose?.();
  }
})();
