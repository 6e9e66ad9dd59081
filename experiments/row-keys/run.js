#!/usr/bin/env node
/**
 * Which token rows of the edit should key MEND's update? ROME keys its edit on the subject's last
 * token; MEND (officially) sums the editor's output over every token row with a gradient. This
 * diagnostic runs the shipped editor on every row as usual, keeps only the chosen rows of its output
 * (the editor works row by row, so this equals feeding it only those rows), calibrates each edit's
 * step as MEND-cal does (calibrate.ts) and reports edit success, held-out paraphrases and locality
 * per class on one split's edits.
 *
 *   all        every row (= MEND-cal)
 *   subject    the subject's tokens only (ROME's choice of position, all of the subject's tokens)
 *   subject+last   the subject's tokens and the last prompt position
 *   no-prefix  every row except <bos> and the relation words before the subject
 *
 * The subject span is found by matching the world's subject names in the prompt. `--blocks 2,3`
 * also drops the update of every edited weight outside those blocks (which layers carry the edit).
 *
 *   node experiments/row-keys/run.js [--modes all,subject,subject+last,no-prefix] [--split val|test]
 *                            [--margin 1.3] [--max 2] [--editor DIR] [--blocks 1,2,3]
 */
const tf = require("@tensorflow/tfjs");
const { mend, flags, loadShipped, subjectFinder, scaledEdit } = require("../common");

const KEEP = {
  all: () => true,
  subject: (pos, s) => pos >= s.start && pos < s.end,
  "subject+last": (pos, s) => (pos >= s.start && pos < s.end) || pos === s.last,
  "no-prefix": (pos, s) => pos >= s.start,
};

/** A calibrated MEND edit whose update keeps only the rows `keep(position, span)` accepts. */
function rowMethod(editor, mode, subjectSpan, calibration, steps, names = editor.config.innerParams) {
  const keep = KEEP[mode];
  if (!keep) throw new Error(`unknown mode "${mode}"; choose from ${Object.keys(KEEP).join(", ")}`);
  return {
    name: mode,
    edit(model, requests) {
      const t0 = performance.now();
      const spans = requests.map((r) => subjectSpan(r.prompt));
      const batch = mend.makeBatch(model.tokenizer, requests, "target", model.config.n_positions);
      const T = batch.inputIds.shape[1];
      const factors = mend.captureEditorFactors(model.params, model.config, batch, editor);
      const update = tf.tidy(() => {
        const transformed = mend.transformFactors(editor, factors);
        return Object.fromEntries(names.map((name) => {
          const rows = factors.rows[name];
          const mask = tf.tensor2d(rows.map((r) => (keep(r % T, spans[Math.floor(r / T)]) ? 1 : 0)), [rows.length, 1]); // [Nk, 1]
          return [name, { left: tf.mul(tf.mul(transformed[name].uTilde, mask), editor.editLrs[name]), right: transformed[name].deltaTilde }];
        }));
      });
      const withReq = mend.withRequests(factors, update);
      const c = mend.calibrateSteps(model, withReq, batch, calibration);
      steps.push(...c.scales.map((s, i) => (c.found[i] ? s : NaN)));
      mend.disposeFactors(factors);
      mend.disposeBatch(batch);
      return scaledEdit(model, withReq, c.scales, t0); // W + α (s∘ũ)ᵀ δ̃
    },
  };
}

async function main() {
  const flag = flags();
  const { model, editor } = await loadShipped(flag("editor"));
  const world = mend.World.load();
  const subjectSpan = subjectFinder(model.tokenizer, world);
  const calibration = { margin: Number(flag("margin", "1.3")), maxScale: Number(flag("max", "2")) };
  const blocks = flag("blocks")?.split(",");
  const names = editor.config.innerParams.filter((n) => !blocks || blocks.includes(n.split(".")[1]));
  if (names.length === 0) throw new Error(`--blocks ${blocks}: the editor edits no weight there (it edits ${editor.config.innerParams.join(", ")})`);
  const steps = {};
  const methods = flag("modes", "all,subject,subject+last,no-prefix").split(",").map((m) => rowMethod(editor, m, subjectSpan, calibration, (steps[m] = []), names));
  const records = world.editRecords(flag("split", "val"));
  const r = mend.evaluateMethods(model, world, methods, records, { ...mend.DEFAULT_EVAL_CONFIG, batchSizes: [1], sequential: 0 }, () => {});
  console.log(`${records.length} ${flag("split", "val")} edits, calibrated at x${calibration.margin}, steps up to ${calibration.maxScale} α∇̃W, updates of ${names.join(", ")}`);
  console.log("| rows | ES / held-out paraphrases / locality | same subject | same relation (same answer) | unrelated | edit calls with no right step |\n|---|---|---|---|---|---|");
  for (const [name, v] of Object.entries(r.methods)) {
    const L = v.locality;
    const none = steps[name].filter((s) => Number.isNaN(s)).length;
    console.log(`| ${name} | ${v.es.toFixed(3)} / ${v.paraphrase.toFixed(3)} / ${L.overall.toFixed(3)} | ${L.same_subject.toFixed(3)} | ${L.same_relation.toFixed(3)} (${L.same_relation_same_answer.toFixed(3)}) | ${L.unrelated.toFixed(3)} | ${none} of ${steps[name].length} |`);
  }
  mend.disposeEditor(editor);
  mend.disposeParams(model.params);
}

main().catch((e) => {
  console.error(`row-keys: ${e.message}`);
  process.exit(1);
});
