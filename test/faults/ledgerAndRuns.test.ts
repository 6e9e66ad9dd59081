/**
 * The ledger's and the runs' faults of the third sweep that are fixed: a model folder is held for a
 * whole edit (two appends at once lose nothing), `mend ledger` puts back a folder a killed write left
 * aside before its first check, a base model that cannot be loaded is named by its flag, a damaged
 * edits.json is refused by field, a chain of mixed methods says which state it drops (and a key-value
 * state is not carried to other weights), `mend paper`
 * refuses a seed given twice, and `--resume` refuses a data file that changed.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { readConsistently, writeFolder } from "../../dist/model/checkpointFolder";
import { assertFails, assertOk, mend, ROOT, tmp } from "./helpers";

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

/** `mend` in the background: resolves with its exit status and stderr. */
function mendAsync(args: readonly string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(ROOT, "bin", "mend.js"), ...args], { cwd: ROOT });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (status) => resolve({ status, stderr }));
  });
}

test("two in-place appends to one ledger folder at once: one is refused at its start, no edit is lost", async () => {
  const parent = tmp("ledger-concurrent");
  const dir = path.join(parent, "e1");
  assertOk(mend(["edit", ...BIDEN, "--save", dir]), "mend edit --save");
  const append = (target: string) => mendAsync(["edit", "--model", dir, "--prompt", "The capital of Kenya is", "--target", target, "--save", dir, "--force"]);
  const runs = await Promise.all([append("Lima"), append("Paris")]);
  const ok = runs.filter((r) => r.status === 0).length;
  for (const r of runs.filter((x) => x.status !== 0)) assert.match(r.stderr, /is being edited by another mend process \(pid \d+, started [0-9T:.Z-]+\)/);
  assert.ok(ok >= 1, runs.map((r) => r.stderr).join("\n"));
  assert.equal(JSON.parse(mend(["ledger", "--model", dir, "--json"]).stdout).edits.length, 1 + ok, "every edit that reported success is in the ledger");
  assert.deepEqual(fs.readdirSync(parent).sort(), ["e1"], "no lock or temporary folder is left");
  fs.rmSync(parent, { recursive: true, force: true });
});

test("a model folder held by a live process is refused with its pid and start time; a dead holder's lock is taken over", () => {
  const parent = tmp("ledger-lock");
  const dir = path.join(parent, "e1");
  assertOk(mend(["edit", ...BIDEN, "--save", dir]), "mend edit --save");
  const lock = path.join(parent, ".e1.edit.lock");
  fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, started: "2026-12-07T10:00:00.000Z" })); // this test process: alive
  const r = mend(["ledger", "--model", dir, "--undo", "1", "--save", dir, "--force"]);
  assertFails(r, new RegExp(`is being edited by another mend process \\(pid ${process.pid}, started 2026-12-07T10:00:00.000Z\\)`), "undo while held");
  assertFails(mend(["edit", "--model", dir, ...BIDEN, "--save", dir, "--force"]), /is being edited by another mend process/, "edit while held");
  assert.equal(JSON.parse(mend(["ledger", "--model", dir, "--json"]).stdout).edits.length, 1, "nothing changed");
  const dead = Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout);
  fs.writeFileSync(lock, JSON.stringify({ pid: dead, started: "2026-12-07T09:00:00.000Z" }));
  assertOk(mend(["edit", "--model", dir, "--prompt", "The capital of Kenya is", "--target", "Lima", "--save", dir, "--force"]), "edit over a dead holder's lock");
  assert.equal(fs.existsSync(lock), false, "the lock is released");
  assert.equal(JSON.parse(mend(["ledger", "--model", dir, "--json"]).stdout).edits.length, 2);
  fs.rmSync(parent, { recursive: true, force: true });
});

test("a damaged edits.json (no manifest to catch it) is refused by file and field, never a raw TypeError", () => {
  const parent = tmp("ledger-damaged");
  const dir = path.join(parent, "e1");
  assertOk(mend(["edit", ...BIDEN, "--save", dir]), "mend edit --save");
  fs.rmSync(path.join(dir, "manifest.json"));
  const good = JSON.parse(fs.readFileSync(path.join(dir, "edits.json"), "utf8"));
  const weight = Object.keys(good.entries[0].update)[0];
  const cases: [string, (j: any) => void, RegExp][] = [
    ["next_id at an existing id", (j) => (j.next_id = 1), /edits\.json: next_id must be an integer above every entry's id \(1\), got 1/],
    ["requests a number", (j) => (j.entries[0].requests = 5), /edits\.json: entries\[0\]\.requests must be a non-empty list/],
    ["an update a number", (j) => (j.entries[0].update[weight] = 5), /edits\.json: entries\[0\]\.update\[".*"\] must be an object, got 5/],
    ["rows that are not the keys'", (j) => (j.entries[0].update[weight].rows += 1), /entries\[0\]\.update\[".*"\]\.requests must be a list of \d+ request indices|has shape/],
    ["a prototype key", (j) => (j.entries[0].update = JSON.parse('{"__proto__": {"dense": true}}')), /edit 1 changes "__proto__", which the base model does not have/],
    ["entries null", (j) => (j.entries = null), /edits\.json: entries must be a list, got null/],
  ];
  for (const [what, damage, message] of cases) {
    const j = JSON.parse(JSON.stringify(good));
    damage(j);
    fs.writeFileSync(path.join(dir, "edits.json"), JSON.stringify(j));
    for (const args of [["ledger", "--model", dir], ["edit", "--model", dir, ...BIDEN]]) {
      const r = mend(args);
      assertFails(r, message, `${args[0]} with ${what}`);
      assert.doesNotMatch(r.stderr, /TypeError|is not a function|Cannot (use|read)/, `${args[0]} with ${what}`);
    }
  }
  fs.rmSync(parent, { recursive: true, force: true });
});

test("a chain of mixed methods says, before editing, which method's state it does not carry over", () => {
  const parent = tmp("ledger-mixed");
  const dir = path.join(parent, "e");
  assertOk(mend(["edit", "--method", "UltraEdit", ...BIDEN, "--save", dir]), "UltraEdit");
  assertOk(mend(["edit", "--model", dir, "--method", "MEND", "--prompt", "The capital of Kenya is", "--target", "Lima", "--save", dir, "--force"]), "then MEND");
  const r = mend(["edit", "--model", dir, "--method", "UltraEdit", "--prompt", "The capital of Peru is", "--target", "Quito", "--save", dir, "--force"]);
  assertOk(r, "then UltraEdit again");
  assert.match(r.stderr, /note: UltraEdit's state after edit 1 is not carried into this edit: edit 2 \(MEND\) came after it/);
  fs.rmSync(parent, { recursive: true, force: true });
});

test("a key-value method's state is not carried to other weights: --weights that differ from the state's are refused by name", () => {
  const parent = tmp("ledger-weights");
  const one = path.join(parent, "one");
  const two = path.join(parent, "two");
  const both = "h.2.mlp.c_proj.weight,h.3.mlp.c_proj.weight";
  assertOk(mend(["edit", "--method", "UltraEdit", ...BIDEN, "--save", one]), "UltraEdit on the default weight");
  // before: the state of one weight was dropped without a word (a fresh start for both weights)
  assertFails(mend(["edit", "--model", one, "--method", "UltraEdit", "--weights", both, "--prompt", "The capital of Peru is", "--target", "Quito", "--save", path.join(parent, "x")]), /edit 1's UltraEdit state belongs to the weights it edited \(h\.3\.mlp\.c_proj\.weight\), and this edit names h\.2\.mlp\.c_proj\.weight, h\.3\.mlp\.c_proj\.weight \(--weights\)/, "one weight, then two");
  assertOk(mend(["edit", "--method", "UltraEdit", "--weights", both, ...BIDEN, "--save", two]), "UltraEdit on two weights");
  // before: a raw "Argument 'x' passed to 'clone' must be a Tensor" (the two-weight state read as one weight's)
  assertFails(mend(["edit", "--model", two, "--method", "UltraEdit", "--prompt", "The capital of Peru is", "--target", "Quito", "--save", path.join(parent, "y")]), /edit 1's UltraEdit state belongs to the weights it edited \(h\.2\.mlp\.c_proj\.weight, h\.3\.mlp\.c_proj\.weight\), and this edit names h\.3\.mlp\.c_proj\.weight \(the default\): .*--weights h\.2\.mlp\.c_proj\.weight,h\.3\.mlp\.c_proj\.weight/, "two weights, then the default one");
  assertOk(mend(["edit", "--model", two, "--method", "UltraEdit", "--weights", both, "--prompt", "The capital of Peru is", "--target", "Quito", "--save", two, "--force"]), "the same two weights carry the state");
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(two, "edits.json"), "utf8")).entries[1].state.meta, { "h.2.mlp.c_proj.weight": { count: 2 }, "h.3.mlp.c_proj.weight": { count: 2 } });
  assert.equal(fs.existsSync(path.join(parent, "x")) || fs.existsSync(path.join(parent, "y")), false, "nothing written by a refused edit");
  fs.rmSync(parent, { recursive: true, force: true });
});

test("train-editor --resume refuses a --data file that changed since the run started, naming it", () => {
  const dir = tmp("resume-data");
  const model = path.join(dir, "gpt2");
  assertOk(mend(["random-gpt2", "--out", model, "--seed", "4"]), "random-gpt2");
  const data = path.join(dir, "zsre.json");
  fs.copyFileSync(path.join(ROOT, "data", "zsre", "zsre_mend_train-800.json"), data);
  const run = path.join(dir, "run");
  assertOk(mend(["train-editor", "--model", model, "--data", `zsre:${data}`, "--run-dir", run, "--steps", "1", "--accumulate", "2", "--rank", "8"]), "train 1 step");
  const records = JSON.parse(fs.readFileSync(data, "utf8"));
  fs.writeFileSync(data, JSON.stringify(records.slice(0, records.length - 1)));
  const r = mend(["train-editor", "--model", model, "--resume", "--run-dir", run, "--steps", "2"]);
  assertFails(r, /cannot resume: .*zsre\.json, the run's --data, changed since the run started \(SHA-256 [0-9a-f]{12}… then, [0-9a-f]{12}… now\)/, "resume on a changed file");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a mend child dies with its parent, even after SIGKILL, and leaves its run lock to be taken over", async () => {
  const dir = tmp("orphan");
  const run = path.join(dir, "run");
  // the parent: starts a long training as mend's parents do (MEND_PARENT_PID), prints the child's pid, waits
  const parent = spawn(process.execPath, ["-e", `
    const { spawn } = require("child_process");
    const c = spawn(process.execPath, [${JSON.stringify(path.join(ROOT, "bin", "mend.js"))}, "train-editor", "--run-dir", ${JSON.stringify(run)}, "--steps", "5000", "--rank", "16"], { stdio: "ignore", env: { ...process.env, MEND_PARENT_PID: String(process.pid) } });
    console.log(c.pid);
    setInterval(() => {}, 1000);
  `]);
  const childPid = await new Promise<number>((resolve) => parent.stdout.once("data", (d) => resolve(Number(String(d).trim()))));
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const until = async (cond: () => boolean, ms: number) => {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await new Promise((r) => setTimeout(r, 200))) if (cond()) return true;
    return cond();
  };
  assert.ok(await until(() => fs.existsSync(path.join(run, ".run.lock")), 60_000), "the child started its run");
  parent.kill("SIGKILL");
  const gone = await until(() => !alive(childPid), 15_000);
  if (!gone) process.kill(childPid, "SIGKILL"); // leave no orphan behind the test either
  assert.ok(gone, `the child ${childPid} outlived its killed parent`);
  const holder = JSON.parse(fs.readFileSync(path.join(run, ".run.lock"), "utf8")).pid;
  assert.equal(alive(holder), false, "the lock's holder is gone, so the next run takes it over");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("editing a model folder without a ledger in place is refused before any work (it would overwrite its own W0)", () => {
  const dir = tmp("inplace-base");
  const model = path.join(dir, "m");
  fs.cpSync(path.join(ROOT, "checkpoints", "base"), model, { recursive: true });
  const before = fs.readFileSync(path.join(model, "model.safetensors"));
  const r = mend(["edit", "--model", model, ...BIDEN, "--save", model, "--force"]);
  assertFails(r, /--save .*m is --model itself, a model with no edit ledger: .* Save to another folder \(--save DIR\); that folder can then be edited in place \(its ledger records .*m as its base\)/, "in-place edit of a plain model");
  assert.ok(fs.readFileSync(path.join(model, "model.safetensors")).equals(before), "the folder is untouched");
  // the advised way: save elsewhere, then append in place; the ledger found its base without --base
  const e1 = path.join(dir, "e1");
  assertOk(mend(["edit", "--model", model, ...BIDEN, "--save", e1]), "save elsewhere");
  assert.equal(JSON.parse(fs.readFileSync(path.join(e1, "edits.json"), "utf8")).base.path, fs.realpathSync(model));
  assertOk(mend(["edit", "--model", e1, "--prompt", "The capital of Kenya is", "--target", "Lima", "--save", e1, "--force"]), "append in place");
  assert.equal(JSON.parse(mend(["ledger", "--model", e1, "--json"]).stdout).edits.length, 2);
  // the recorded base moved: the message names it and --base, which still works
  const moved = path.join(dir, "moved");
  fs.renameSync(model, moved);
  assertFails(mend(["ledger", "--model", e1, "--json"]), new RegExp(`its edits were made to the base model in .*m, which is gone: pass that base model with --base DIR`), "recorded base gone");
  assert.equal(JSON.parse(mend(["ledger", "--model", e1, "--base", moved, "--json"]).stdout).edits.length, 2);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a reader across a writer's swap reads the folder again instead of calling it damaged; a real error is thrown at once", () => {
  const dir = tmp("swap-read");
  const folder = path.join(dir, "f");
  const write = (v: string) => writeFolder(folder, "model", { "a.txt": v, "b.txt": v });
  write("1");
  let calls = 0;
  const got = readConsistently(folder, () => {
    calls++;
    const a = fs.readFileSync(path.join(folder, "a.txt"), "utf8");
    if (calls === 1) write("2"); // a writer swaps the folder between the reader's two reads
    const b = fs.readFileSync(path.join(folder, "b.txt"), "utf8");
    if (a !== b) throw new Error(`a.txt says ${a}, b.txt says ${b}: not one folder`);
    return a;
  });
  assert.equal(got, "2");
  assert.equal(calls, 2, "read again once");
  calls = 0;
  assert.throws(() => readConsistently(folder, () => { calls++; throw new Error("damaged"); }), /damaged/);
  assert.equal(calls, 1, "the same folder failing is not retried");
  fs.rmSync(dir, { recursive: true, force: true });
});
