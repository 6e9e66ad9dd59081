/** The `mend` command rejects bad input with an error that names the problem. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as path from "path";
import * as fs from "fs";
import * as os from "os";
import { ROOT } from "./helpers";

function mend(...args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), ...args], { encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stderr: r.stderr };
}

/** Bad input exits 1; an unknown command exits 2 (usage error) with the usage text. */
function assertFails(args: string[], message: RegExp, status?: number): void {
  const r = mend(...args);
  if (status === undefined) assert.ok(r.status === 1 || r.status === 2, `mend ${args.join(" ")} should fail; stderr: ${r.stderr}`);
  else assert.equal(r.status, status, `mend ${args.join(" ")} should exit ${status}; stderr: ${r.stderr}`);
  assert.match(r.stderr, message);
}

test("mend: unknown commands and options are named", () => {
  assertFails(["frobnicate"], /unknown command "frobnicate"/, 2);
  assertFails(["eval", "--bogus", "1"], /Unknown option '--bogus'/);
});

test("mend eval: --split takes val or test", () => {
  assertFails(["eval", "--split", "train"], /--split must be one of test, val, got "train"/);
});

test("mend train-editor: bad --loc-per-edit, --c-loc, --rank, --rows, --same-answer-loc, --key-precond, and shape flags with --init are errors", () => {
  assertFails(["train-editor", "--loc-per-edit", "0"], /--loc-per-edit must be >= 1, got 0/);
  assertFails(["train-editor", "--c-loc", "-1"], /--c-loc/);
  assertFails(["train-editor", "--rank", "0"], /--rank must be >= 1, got 0/);
  assertFails(["train-editor", "--init", "checkpoints/editor", "--rank", "64"], /with --init the editor keeps its own/);
  assertFails(["train-editor", "--same-answer-loc", "1.5"], /--same-answer-loc must be <= 1, got 1.5/);
  assertFails(["train-editor", "--key-precond", "0"], /--key-precond must be > 0, got 0/);
  assertFails(["train-editor", "--init", "checkpoints/editor", "--key-precond", "1"], /with --init the editor keeps its own \(drop --key-precond\)/);
  assertFails(["train-editor", "--rows", "some"], /--rows must be one of all, target, got "some"/);
  assertFails(["train-editor", "--init", "checkpoints/editor", "--rows", "target"], /with --init the editor keeps its own \(drop --rows\)/);
});

test("mend pretrain: bad model sizes are named before any training starts", () => {
  assertFails(["pretrain", "--n-embd", "0"], /--n-embd must be >= 1, got 0/);
  assertFails(["pretrain", "--n-layer", "2.5"], /--n-layer must be a whole number, got "2.5"/);
  assertFails(["pretrain", "--n-embd", "100", "--n-head", "3"], /--n-embd \(100\) must be divisible by --n-head \(3\)/);
  assertFails(["pretrain", "--n-embd", "256", "--resume"], /cannot be combined with --resume/);
});

test("mend edit: unknown words, empty targets and missing checkpoints are named", () => {
  assertFails(["edit", "--prompt", "The president of Narnia is", "--target", "Biden"], /Narnia/);
  assertFails(["edit", "--prompt", "The president of the United States is", "--target", " "], /target is empty|--target needs a value/);
  assertFails(["edit", "--prompt", "The president of the United States is", "--target", "Biden", "--editor", "/nonexistent/editor"], /\/nonexistent\/editor/);
});

test("mend edit --calibrate: the shipped edit with a calibrated step, in the JSON; a bad margin is named", () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), "edit", "--prompt", "The president of the United States is", "--target", "Biden", "--calibrate", "1.3", "--json"], { encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { results: { kind: string; after: { token: string } }[]; calibration: { scales: number[]; thresholds: number[]; found: boolean[] } };
  assert.deepEqual(out.calibration.found, [true]);
  assert.ok(Math.abs(out.calibration.scales[0] - 1.3 * out.calibration.thresholds[0]) < 1e-9);
  assert.ok(out.calibration.scales[0] < 1, `the Biden edit needs less than the official step: ${out.calibration.scales[0]}`);
  for (const x of out.results.filter((x) => x.kind === "edit" || x.kind === "paraphrase")) assert.equal(x.after.token, "Biden");
  assertFails(["edit", "--prompt", "The president of the United States is", "--target", "Biden", "--calibrate", "0"], /--calibrate must be > 0, got 0/);
  assertFails(["eval", "--calibrate=-1"], /--calibrate must be > 0, got -1/);
});

test("mend <command> --help for every command, research flags under advanced; bad flags are named", () => {
  for (const cmd of ["predict", "edit", "eval", "demo", "pretrain", "train-editor", "world", "bench"]) {
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), cmd, "--help"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^mend ${cmd}: `), cmd);
    assert.match(r.stdout, /options:/, cmd);
  }
  const te = spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), "train-editor", "--help"], { encoding: "utf8" });
  assert.match(te.stdout, /advanced[^]*--key-precond/);
  assert.match(te.stdout, /--lr LR/);
  assert.match(te.stdout, /--time-budget SEC/);
  assertFails(["predict", "--prompt", "The capital of Peru is", "--top", "0"], /--top must be >= 1, got 0/);
  assertFails(["predict", "--prompt", "The capital of Peru is", "--top", "1.5"], /--top must be a whole number, got "1.5"/);
  assertFails(["edit", "--prompt", "The capital of Peru is", "--target", "Lima", "--save"], /--save/);
  assertFails(["edit", "--prompt", "The capital of Peru is", "--target", "Lima", "--save", "--json"], /--save/);
  assertFails(["predict", "--prompt", "The capital of Peru is", "stray"], /unexpected argument "stray"/);
  assertFails(["predict", "--prompt", "The capital of Peru is", "--bogus", "1"], /bogus/);
  assertFails(["eval", "--methods", "MEND,XYZ"], /--methods: unknown "XYZ"/);
  assertFails(["edit", "--requests", "x.json", "--prompt", "a"], /not both/);
});

test("nothing the user did not name is overwritten: shipped checkpoints, source folders, non-empty folders need --force", () => {
  const edit = ["edit", "--prompt", "The capital of Peru is", "--target", "Quito"];
  assertFails([...edit, "--save", path.join(ROOT, "checkpoints", "base")], /refusing to write the model to .*checkpoints\/base: it is one of the shipped checkpoints .*; it is a folder this command reads from; it already holds a model\. Pass --force/);
  assertFails([...edit, "--save", path.join(ROOT, "checkpoints", "editor")], /it holds an editor, not a model/);
  const busy = fs.mkdtempSync(path.join(os.tmpdir(), "busy-"));
  fs.writeFileSync(path.join(busy, "notes.txt"), "mine");
  assertFails([...edit, "--save", busy], /it is a non-empty folder\. Pass --force/);
  assert.equal(fs.readFileSync(path.join(busy, "notes.txt"), "utf8"), "mine");
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "save-")), "edited");
  const r = mend(...edit, "--save", out, "--json");
  assert.equal(r.status, 0, r.stderr);
  assertFails([...edit, "--save", out], /already holds a model/);
  assert.equal(mend(...edit, "--save", out, "--force", "--json").status, 0);
  assertFails(["pretrain", "--steps", "1", "--out", path.join(ROOT, "checkpoints", "base")], /refusing to write the model to .*shipped checkpoints/);
  assertFails(["train-editor", "--steps", "1", "--out", path.join(ROOT, "checkpoints", "editor")], /refusing to write the editor to .*shipped checkpoints/);
});

test("resume: a missing run is an error, the run's own settings cannot change, numbers keep their ranges", () => {
  assertFails(["train-editor", "--resume"], /--resume needs --run-dir DIR/);
  assertFails(["train-editor", "--resume", "--run-dir", "/nonexistent/run", "--lr", "1e-3"], /nothing to resume: \/nonexistent\/run\/last\/trainer_state\.json not found/);
  assertFails(["train-editor", "--resume", "--run-dir", "/nonexistent/run", "--steps", "10", "--out", path.join(os.tmpdir(), `te-${process.pid}`)], /nothing to resume: \/nonexistent\/run\/last\/trainer_state\.json not found/);
  assertFails(["pretrain", "--resume", "--run-dir", "/nonexistent/run", "--seed", "3"], /--seed cannot be combined with --resume/);
  assertFails(["pretrain", "--resume", "--run-dir", "/nonexistent/run", "--out", path.join(os.tmpdir(), `pt-${process.pid}`)], /nothing to resume/);
  assertFails(["eval", "--limit", "0"], /--limit must be >= 1, got 0/);
  assertFails(["edit", "--prompt", "The capital of Peru is <eos>", "--target", "Lima"], /special tokens cannot appear/);
  assertFails(["edit", "--prompt", "La capitale de la Français est", "--target", "Lima"], /unknown words? .*"Français"/);
});
