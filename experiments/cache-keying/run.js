/**
 * What should the cache baseline key on? Every block's residual, mean-pooled over the prompt or
 * taken at its last token, each with its ε* on the facts world's validation edits (paraphrase hits
 * and locality misses at that threshold). Writes results.json beside this file.
 *
 *   npm run build && node experiments/cache-keying/run.js
 */
const fs = require("fs");
const path = require("path");
const { execSync } = require("child_process");
const lib = require(path.join(__dirname, "..", "..", "dist"));

(async () => {
  await lib.model.initBackend();
  const model = lib.model.loadModel(path.join(__dirname, "..", "..", "checkpoints", "base"));
  const records = lib.world.World.load().editRecords("val");
  const rows = lib.baselines.compareCacheKeyings(model, records);
  console.log(`${records.length} validation edits; keying, ε*, paraphrase hits, locality misses (best first)`);
  for (const r of rows) console.log(`${r.pooling.padEnd(4)} block ${r.layer}   ε* ${r.threshold.toFixed(3).padStart(7)}   hits ${r.paraphraseHits.toFixed(3)}   misses ${r.localityMisses.toFixed(3)}`);
  const commit = execSync("git rev-parse --short HEAD", { cwd: __dirname, encoding: "utf8" }).trim();
  const out = { command: "node experiments/cache-keying/run.js", commit, date: new Date().toISOString().slice(0, 10), validation_edits: records.length, rows };
  fs.writeFileSync(path.join(__dirname, "results.json"), JSON.stringify(out, null, 1) + "\n");
})();
