/**
 * The edit ledger's faults (the sweep's "Nothing lost, round three" cases that are fixed): `mend
 * ledger` puts back a folder a killed write left aside before its first check, a base model that
 * cannot be loaded is named by its flag, and `mend paper` refuses a seed given twice at its start.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { assertFails, assertOk, mend, tmp } from "./helpers";

const BIDEN = ["--prompt", "The president of the United States is", "--target", "Biden"];

test("mend ledger reads a ledger folder that a killed write left aside (it is put back first)", () => {
  const parent = tmp("ledger-aside");
  const dir = path.join(parent, "e1");
  assertOk(mend(["edit", ...BIDEN, "--save", dir]), "mend edit --save");
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout;
  fs.renameSync(dir, path.join(parent, `.e1.old.${dead}.89abcdef`)); // a kill between the swap's two renames
  const r = mend(["ledger", "--model", dir, "--json"]);
  assertOk(r, "mend ledger on the folder left aside");
  assert.equal(JSON.parse(r.stdout).edits.length, 1);
  assert.deepEqual(fs.readdirSync(parent), ["e1"]);
  // the same for an edit appended to it
  fs.renameSync(dir, path.join(parent, `.e1.old.${dead}.89abcdef`));
  assertOk(mend(["edit", "--model", dir, "--prompt", "The capital of Kenya is", "--target", "Lima", "--save", dir, "--force"]), "mend edit appending to the folder left aside");
  assert.equal(JSON.parse(mend(["ledger", "--model", dir, "--json"]).stdout).edits.length, 2);
  fs.rmSync(parent, { recursive: true, force: true });
});

test("a --base that cannot be loaded is named by its flag, not as --model", () => {
  const parent = tmp("ledger-base");
  const dir = path.join(parent, "e1");
  assertOk(mend(["edit", ...BIDEN, "--save", dir]), "mend edit --save");
  const missing = path.join(parent, "nowhere");
  for (const args of [["ledger", "--model", dir, "--base", missing], ["edit", "--model", dir, "--base", missing, ...BIDEN]]) {
    const r = mend(args);
    assertFails(r, /--base .*nowhere \(the base model the edits were made to\): model folder .* not found/, args[0]);
    assert.doesNotMatch(r.stderr, /pass --model/);
  }
  fs.rmSync(parent, { recursive: true, force: true });
});

test("mend paper refuses a seed given twice before any work", () => {
  const runs = tmp("paper-seeds");
  assertFails(mend(["paper", "--seeds", "1,1", "--runs", path.join(runs, "r")]), /--seeds 1,1 names seed 1 more than once/, "mend paper --seeds 1,1");
  assert.equal(fs.existsSync(path.join(runs, "r")), false, "nothing was started");
  fs.rmSync(runs, { recursive: true, force: true });
});
