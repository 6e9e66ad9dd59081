#!/usr/bin/env node
/**
 * Calibrating the step on the edit's own paraphrases. MEND-cal (calibrate.ts) scales each edit's
 * update to margin × the smallest step s* that makes the *edit prompt* right; the margin is what
 * carries the edit to paraphrases, and it is one number for all edits. Here s* is instead the
 * smallest step at which the edit prompt *and its other training-template paraphrases* are all right
 * (the world's four training templates of the fact; the held-out templates that are scored are never
 * used), and the margin only adds a little on top. The update is the editor's as usual (with
 * `--beta B`, kept off the preserved same-answer inputs as in preserve.ts, without its fallback).
 * Reports edit success, held-out paraphrases and locality per class on one split's single edits.
 *
 *   node experiments/paraphrase-calibration/run.js [--editor DIR] [--split val|test] [--margins 1,1.1,1.2] [--max 3] [--beta B]
 */
const tf = require("@tensorflow/tfjs");
const { mend, flags, loadShipped, scaledEdit } = require("../common");

/** A MEND edit whose step is margin × the smallest one that makes every training-template paraphrase of the fact right. */
function paraphraseCalibrated(editor, world, margin, maxScale, preservation) {
  return {
    name: `x${margin}${preservation ? ` β ${preservation.beta}` : ""}`,
    edit(model, requests) {
      if (requests.length !== 1) throw new Error("paraphrase calibration edits one request per call");
      const t0 = performance.now();
      const [request] = requests;
      const fact = world.matchPrompt(request.prompt)?.fact;
      if (!fact) throw new Error(`"${request.prompt}" is no template of a world fact`);
      const batch = mend.makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
      const factors = mend.captureEditorFactors(model.params, model.config, batch, editor);
      let preserved;
      if (preservation) {
        const logits = tf.tidy(() => mend.gptForward(model.params, model.config, batch.inputIds, { attentionMask: batch.attentionMask }).logits);
        const old = mend.firstTargetArgmax(logits, batch.labels.arraySync());
        logits.dispose();
        preserved = { beta: preservation.beta, inputs: mend.preservedInputsAt(preservation.set, mend.preservedRows(preservation.set, old), editor.config.innerParams) };
      }
      const keyed = preserved ? mend.withKeys(editor, mend.preconditionedKeys({ precond: mend.extensionsOf(editor)?.precond, batchBeta: mend.extensionsOf(editor)?.extensions.batchPrecond, preserved })) : editor;
      const update = mend.withRequests(factors, tf.tidy(() => mend.lowRankEdits(keyed, factors, 1))); // left = α·ũ, right = δ̃
      if (preserved) tf.dispose(Object.values(preserved.inputs));
      const paraphrases = world.prompts(fact.subject, fact.relation, "train").map((prompt) => ({ prompt, target: request.target }));
      const check = mend.makeBatch(model.tokenizer, paraphrases, "target", model.config.n_positions);
      const labels = check.labels.arraySync();
      // Every row of the check batch is a paraphrase of request 0: a candidate step is right when all of them are.
      const allRight = (scales) => mend.rightAtScales(model, update, check, scales, labels).map((rows) => [rows.every(Boolean)]);
      const s = mend.smallestRightSteps(allRight, 1, maxScale)[0];
      mend.disposeFactors(factors);
      mend.disposeBatch(batch);
      mend.disposeBatch(check);
      return scaledEdit(model, update, [Number.isNaN(s) ? 1 : margin * s], t0); // none right up to maxScale: the official step
    },
  };
}

async function main() {
  const flag = flags();
  const { model, editor } = await loadShipped(flag("editor"));
  const world = mend.World.load();
  const beta = flag("beta") === undefined ? null : Number(flag("beta"));
  if (beta !== null && !(beta > 0)) throw new Error(`--beta must be a number > 0, got "${flag("beta")}"`);
  const preservation = beta ? { beta, set: mend.buildPreservationSet(model, editor.config.innerParams, mend.trainingSplitPrompts(world)) } : null;
  const margins = flag("margins", "1,1.1,1.2").split(",").map(Number);
  if (margins.some((m) => !(m > 0))) throw new Error(`--margins: "${flag("margins")}" are not numbers > 0`);
  const methods = margins.map((m) => paraphraseCalibrated(editor, world, m, Number(flag("max", "3")), preservation));
  const split = flag("split", "val");
  const records = world.editRecords(split);
  const r = mend.evaluateMethods(model, world, methods, records, { ...mend.DEFAULT_EVAL_CONFIG, batchSizes: [1], sequential: 0 }, () => {});
  console.log(`${records.length} ${split} edits, ${flag("editor") ?? "checkpoints/editor"}, step calibrated on the training-template paraphrases`);
  console.log("| margin | ES / held-out paraphrases / locality | same subject | same relation (same answer) | unrelated |\n|---|---|---|---|---|");
  for (const [name, v] of Object.entries(r.methods)) {
    const L = v.locality;
    console.log(`| ${name} | ${v.es.toFixed(3)} / ${v.paraphrase.toFixed(3)} / ${L.overall.toFixed(3)} | ${L.same_subject.toFixed(3)} | ${L.same_relation.toFixed(3)} (${L.same_relation_same_answer.toFixed(3)}) | ${L.unrelated.toFixed(3)} |`);
  }
  if (preservation) mend.disposePreservationSet(preservation.set);
  mend.disposeEditor(editor);
  mend.disposeParams(model.params);
}

main().catch((e) => {
  console.error(`paraphrase-calibration: ${e.message}`);
  process.exit(1);
});
