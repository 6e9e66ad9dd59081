#!/usr/bin/env node
/**
 * Where to edit, evaluated: every editor of checkpoints/where-to-edit (made by run.sh) on the
 * validation edits, with `mend eval`'s single-edit metrics, written to docs/where-to-edit/results.json
 * for notebook 11 (which reads it and re-evaluates one editor live on the first edits as a check).
 *
 *   node experiments/where-to-edit/evaluate.js [--edits 172] [--check 12] [--out docs/where-to-edit/results.json]
 *
 * --edits: the first N validation edit records (default: all); --check: the notebook's live check
 * re-evaluates the first K of them, so their metrics are stored too. About 35 s per editor on one core.
 */
const fs = require("fs");
const path = require("path");
const { execSync } = require("child_process");
const { mend, flags } = require("../common");

const CHOICES = ["mlp-first-2", "mlp-last-1", "mlp-last-2", "mlp-last-3", "mlp-all-4", "attn-last-3"];
const SEEDS = [1, 2];
const ROOT = path.join(__dirname, "..", "..");

async function main() {
  const flag = flags();
  await mend.initBackend();
  const model = mend.loadModel(path.join(ROOT, "checkpoints", "base"));
  const world = mend.World.load();
  const all = world.editRecords("val");
  const n = Number(flag("edits", String(all.length)));
  const k = Number(flag("check", "12"));
  if (!(Number.isInteger(n) && n >= 1 && n <= all.length)) throw new Error(`--edits must be an integer from 1 to ${all.length}, got ${flag("edits")}`);
  if (!(Number.isInteger(k) && k >= 1 && k <= n)) throw new Error(`--check must be an integer from 1 to --edits (${n}), got ${flag("check")}`);
  const records = all.slice(0, n);
  const single = { ...mend.DEFAULT_EVAL_CONFIG, batchSizes: [], sequential: 0, heatmapEdits: 0, pplSentences: 8 };
  const metrics = (m) => ({ es: m.es, paraphrase: m.paraphrase, locality: m.locality.overall, latency_ms: m.latency_ms });
  const runs = [];
  const t0 = Date.now();
  for (const choice of CHOICES) {
    for (const seed of SEEDS) {
      const dir = path.join("checkpoints", "where-to-edit", `${choice}-s${seed}`);
      const editor = mend.loadEditor(path.join(ROOT, dir), model.config, model.params);
      const method = mend.mendMethod(editor, choice);
      const whole = mend.evaluateMethods(model, world, [method], records, single).methods[choice];
      const first = mend.evaluateMethods(model, world, [method], records.slice(0, k), single).methods[choice];
      runs.push({ choice, seed, dir, matrices: editor.config.innerParams.length, steps: mend.editorTrainingInfo(path.join(ROOT, dir))?.steps ?? null, all: metrics(whole), first: metrics(first) });
      mend.disposeEditor(editor);
      console.log(`${choice} seed ${seed}: ES ${whole.es.toFixed(3)}, paraphrases ${whole.paraphrase.toFixed(3)}, locality ${whole.locality.overall.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
  let commit = "unknown";
  try {
    commit = execSync("git rev-parse --short HEAD", { cwd: ROOT }).toString().trim();
  } catch {
    /* not a git checkout */
  }
  const out = path.resolve(ROOT, flag("out", path.join("docs", "where-to-edit", "results.json")));
  const result = {
    command: `node experiments/where-to-edit/evaluate.js --edits ${n} --check ${k}`,
    date: new Date().toISOString().slice(0, 10),
    commit,
    backend: mend.describeBackend(mend.backendChoice()),
    split: "val",
    edits: n,
    check_edits: k,
    elapsed_sec: (Date.now() - t0) / 1000,
    runs,
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  mend.writeFileDurable(out, JSON.stringify(result, null, 1) + "\n");
  console.log(`wrote ${path.relative(ROOT, out)}`);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
