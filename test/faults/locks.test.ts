/** A run folder is held for the whole run: a second run is refused at once; a dead run's lock is taken over. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { lockRunFolder, RUN_LOCK } from "../../dist/model/checkpointFolder";
import { assertFails, assertOk, deadPid, mend, ROOT, tmp } from "./helpers";

test("lockRunFolder: a live holder is named with its start time; a dead holder's lock is taken over; release frees it", () => {
  const run = tmp("lock");
  const release = lockRunFolder(run);
  const held = JSON.parse(fs.readFileSync(path.join(run, RUN_LOCK), "utf8"));
  assert.equal(held.pid, process.pid);
  assert.throws(() => lockRunFolder(run), /already used by a run in this process/);
  release();
  assert.ok(!fs.existsSync(path.join(run, RUN_LOCK)));
  fs.writeFileSync(path.join(run, RUN_LOCK), JSON.stringify({ pid: deadPid(), started: "2026-01-01T00:00:00.000Z" }));
  const again = lockRunFolder(run); // a killed run's lock
  assert.equal(JSON.parse(fs.readFileSync(path.join(run, RUN_LOCK), "utf8")).pid, process.pid);
  again();
  assert.deepEqual(fs.readdirSync(run), [], "nothing left behind");
  const file = path.join(run, "a-file");
  fs.writeFileSync(file, "");
  assert.throws(() => lockRunFolder(path.join(file, "run")), /cannot create the run folder .*a-file\/run: (ENOTDIR|EEXIST)/);
});

test("two train-editor runs on one --run-dir: the second is refused at start with the first's pid", async () => {
  const dir = tmp("two-runs");
  const run = path.join(dir, "run");
  const first = spawn(process.execPath, [path.join(ROOT, "bin", "mend.js"), "train-editor", "--run-dir", run, "--out", path.join(dir, "a"), "--steps", "40", "--rank", "16"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  first.stderr.on("data", (d) => (err += d));
  for (let i = 0; i < 600 && !fs.existsSync(path.join(run, RUN_LOCK)); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(fs.existsSync(path.join(run, RUN_LOCK)), `the first run took the lock: ${err}`);
  const second = mend(["train-editor", "--run-dir", run, "--out", path.join(dir, "b"), "--steps", "2", "--rank", "16"]);
  assertFails(second, new RegExp(`is used by another run \\(pid ${first.pid}, started `), "second run");
  const code = await new Promise<number | null>((r) => first.on("close", r));
  assert.equal(code, 0, err);
  assert.ok(!fs.existsSync(path.join(dir, "b")), "the second run wrote nothing");
  assertOk(mend(["train-editor", "--resume", "--run-dir", run, "--steps", "41"]), "the lock is free once the first run ends");
});
