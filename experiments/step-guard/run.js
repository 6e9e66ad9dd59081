#!/usr/bin/env node
/**
 * Do the same-answer breaks need MEND-cal's margin, or come with the edit itself? A calibrated MEND
 * edit (margin × s*, calibrate.ts) is checked on up to --n training-split prompts whose base answer
 * is the edit's old answer (subjects never edited or probed). While any of them flips, the step is
 * lowered by --shrink, down to the smallest right step s* (× --floor); if none is clean the
 * calibrated edit stays ("stuck"). The update is linear in the step, so the official edit
 * W + α∇̃W is made once and each candidate is W + t·α∇̃W. Reports the usual validation figures and
 * how many edits were lowered or stuck.
 *
 *   node experiments/step-guard/run.js [--editor editor|editor-batch] [--margin 1.3] [--n 64] [--shrink 0.93] [--floor 1] [--split val]
 */
const tf = require("@tensorflow/tfjs");
const { mend, flags, loadShipped } = require("../common");

async function main() {
  const flag = flags();
  const editorName = flag("editor", "editor");
  const { model, editor } = await loadShipped(undefined, editorName);
  const world = mend.World.load();
  const prompts = mend.trainingSplitPrompts(world);
  const answer = (m, ps) => mend.nextTokenTopK(m, ps, 1).map((t) => t.top[0].id);
  const byAnswer = new Map(); // base answer id -> training-split prompts
  answer(model, prompts).forEach((a, i) => byAnswer.set(a, [...(byAnswer.get(a) ?? []), prompts[i]]));
  const margin = Number(flag("margin", editorName === "editor" ? "1.3" : "1.4"));
  const [n, shrink, floor] = ["n", "shrink", "floor"].map((k, i) => Number(flag(k, ["64", "0.93", "1"][i])));
  const count = { lowered: 0, stuck: 0 };
  const method = {
    name: `guarded MEND-cal x${margin}`,
    edit(m, requests) {
      const t0 = performance.now();
      const done = (e) => ({ params: e.params, edited: e.edited, latencyMs: performance.now() - t0 });
      const cal = mend.mendEdit(m, editor, requests, { stepScale: mend.calibration({ margin, maxScale: 2 }) });
      const { scales, found } = mend.calibrationOf(cal.info);
      if (requests.length !== 1 || !found[0]) return done(cal);
      const old = answer(m, [requests[0].prompt])[0];
      const same = (byAnswer.get(old) ?? []).slice(0, n);
      const flips = (params) => answer({ ...m, params }, same).some((a) => a !== old);
      if (!flips(cal.params)) return done(cal);
      const official = mend.mendEdit(m, editor, requests); // W + α∇̃W, once
      const delta = tf.tidy(() => Object.fromEntries(Object.entries(official.edited).map(([n, w]) => [n, tf.sub(w, m.params[n])])));
      mend.disposeEdit(official);
      try {
        for (let t = scales[0] * shrink; t >= (scales[0] / margin) * floor; t *= shrink) {
          const edited = tf.tidy(() => Object.fromEntries(Object.entries(delta).map(([n, d]) => [n, tf.add(m.params[n], tf.mul(d, t))])));
          const e = { params: { ...m.params, ...edited }, edited };
          if (!flips(e.params)) {
            count.lowered++;
            mend.disposeEdit(cal);
            return done(e);
          }
          mend.disposeEdit(e);
        }
      } finally {
        tf.dispose(Object.values(delta));
      }
      count.stuck++;
      return done(cal);
    },
  };
  const records = world.editRecords(flag("split", "val"));
  const r = mend.evaluateMethods(model, world, [method], records, { ...mend.DEFAULT_EVAL_CONFIG, batchSizes: [1], sequential: 0 }, () => {});
  for (const [name, v] of Object.entries(r.methods)) {
    const L = v.locality;
    console.log(`${name}: ES ${v.es.toFixed(3)} / held-out paraphrases ${v.paraphrase.toFixed(3)} / locality ${L.overall.toFixed(3)}, same subject ${L.same_subject.toFixed(3)}, same relation ${L.same_relation.toFixed(3)} (same answer ${L.same_relation_same_answer.toFixed(3)}), unrelated ${L.unrelated.toFixed(3)}; lowered ${count.lowered}, stuck ${count.stuck} of the edit calls`);
  }
  mend.disposeEditor(editor);
  mend.disposeParams(model.params);
}

main().catch((e) => {
  console.error(`step-guard: ${e.message}`);
  process.exit(1);
});
