/** eval and demo write new run folders by default, with the --out / --force guards checked before any work. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { assertFails, assertOk, mend, ROOT, tmp } from "./helpers";

test("eval --out into a shipped checkpoint, a file or a non-empty folder is refused at once", () => {
  const dir = tmp("eval-out");
  const file = path.join(dir, "a-file");
  fs.writeFileSync(file, "x");
  for (const [out, why] of [[path.join(ROOT, "checkpoints", "base"), /shipped checkpoints/], [file, /it is a file, not a folder/], [dir, /non-empty folder/]] as const) {
    const t0 = Date.now();
    assertFails(mend(["eval", "--out", out]), why, `eval --out ${out}`);
    assert.ok(Date.now() - t0 < 30_000, "refused before the evaluation ran");
    assertFails(mend(["eval", "--data", `counterfact:${path.join(ROOT, "data", "counterfact", "counterfact-val.json")}`, "--out", out]), why, `eval --data --out ${out}`);
  }
  assert.equal(fs.readFileSync(file, "utf8"), "x");
});

test("eval and demo write their reports as one folder: --out DIR, else a new runs/<command>-<time>/", () => {
  const dir = tmp("reports");
  const out = path.join(dir, "eval");
  assertOk(mend(["eval", "--methods", "MEND", "--limit", "2", "--batch-sizes", "1", "--sequential", "0", "--jobs", "1", "--out", out]), "eval");
  assert.deepEqual(fs.readdirSync(out).sort(), ["manifest.json", "report.html", "results.json", "results.md"]);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")).kind, "eval-report");
  assertFails(mend(["eval", "--methods", "MEND", "--limit", "2", "--out", out]), /already holds an eval-report/, "a second eval into it");
  const before = fs.existsSync(path.join(ROOT, "runs")) ? new Set(fs.readdirSync(path.join(ROOT, "runs"))) : new Set<string>();
  const r = mend(["demo"]);
  assertOk(r, "demo");
  const made = fs.readdirSync(path.join(ROOT, "runs")).filter((n) => !before.has(n));
  assert.equal(made.length, 1, `one new run folder: ${made}`);
  assert.match(made[0], /^demo-\d{8}-\d{6}/);
  assert.ok(fs.existsSync(path.join(ROOT, "runs", made[0], "report.html")));
  assert.match(r.stdout, new RegExp(`report: .*${made[0]}`));
  fs.rmSync(path.join(ROOT, "runs", made[0]), { recursive: true });
});
