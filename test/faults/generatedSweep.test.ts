/**
 * The generated fault sweep (scripts/fault-sweep.js) on its quickest target, a model's config.json
 * damaged field by field under `mend predict` and `mend edit`: every run must be a clear message
 * naming the file, or the same output as the undamaged folder (a field those commands do not read).
 * The whole sweep (about half an hour) is run by hand; its table is in docs/files-and-runs.md.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ROOT, tmp } from "./helpers";

test("the generated sweep of a model's config.json: no crash, no silent change, no unclear message", () => {
  const out = tmp("sweep");
  try {
    const r = spawnSync(process.execPath, [path.join(ROOT, "scripts", "fault-sweep.js"), "--only", "model config.json", "--out", out], { encoding: "utf8", timeout: 900_000 });
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    const { runs } = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8")) as { runs: { class: string; damage: string; command: string; message: string }[] };
    assert.ok(runs.length >= 100, `${runs.length} runs`);
    const bad = runs.filter((x) => !["clear", "harmless"].includes(x.class));
    assert.deepEqual(bad.map((x) => `${x.class}: ${x.damage} / ${x.command}: ${x.message.slice(0, 200)}`), []);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
