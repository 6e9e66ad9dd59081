/** Smaller faults of the sweep: request fields, empty flags, long prompts, edit history, resume flags, unwritable run folders. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { modelMetadata } from "../../dist/model/modelFolder";
import { assertFails, assertOk, mend, tmp } from "./helpers";

test("request files: every field must be text, and the message names the file and the request", () => {
  const dir = tmp("requests");
  const file = path.join(dir, "edits.json");
  for (const [reqs, message] of [
    [[{ prompt: 123, target: "x" }], /edits\.json: request 0: "prompt" must be text, got 123/],
    [[{ prompt: "The capital of Peru is", target: { a: 1 } }], /request 0: "target" must be text, got \{"a":1\}/],
    [["The capital of Peru is"], /request 0: expected \{"prompt": \.\.\., "target": \.\.\.\}, got "The capital of Peru is"/],
    [[{ prompt: "The capital of Peru is", target: "Lima" }, null], /request 1: expected/],
  ] as const) {
    fs.writeFileSync(file, JSON.stringify(reqs));
    assertFails(mend(["edit", "--requests", file]), message, JSON.stringify(reqs));
  }
});

test("an empty --probe or --paraphrase names its flag; a 20,000-word prompt is not echoed whole", () => {
  const base = ["edit", "--prompt", "The capital of Peru is", "--target", "Santiago"];
  assertFails(mend([...base, "--probe", ""]), /--probe needs a value/, "--probe ''");
  assertFails(mend([...base, "--paraphrase", " "]), /--paraphrase needs a value/, "--paraphrase ' '");
  const long = Array.from({ length: 20000 }, (_, i) => (i % 2 ? "capital" : "Peru")).join(" ");
  const r = mend(["edit", "--prompt", long, "--target", "Santiago"]);
  assertFails(r, /longer than the model's context/, "a 20,000-word prompt");
  assert.ok(r.stderr.length < 1000, `the message is ${r.stderr.length} characters`);
  const unknown = Array.from({ length: 3000 }, (_, i) => `zz${i}`).join(" ");
  const u = mend(["edit", "--prompt", unknown, "--target", "Santiago"]);
  assertFails(u, /unknown words "zz0", .* and 2995 more/, "3000 unknown words");
  assert.ok(u.stderr.length < 1000, `the message is ${u.stderr.length} characters`);
});

test("an edited model edited again keeps the whole edit history in its metadata", () => {
  const dir = tmp("history");
  const [a, b] = [path.join(dir, "a"), path.join(dir, "b")];
  assertOk(mend(["edit", "--prompt", "The capital of Peru is", "--target", "Santiago", "--save", a]), "first edit");
  assertOk(mend(["edit", "--model", a, "--prompt", "The president of France is", "--target", "Merkel", "--save", b, "--allow-base-mismatch"]), "second edit");
  assert.deepEqual(JSON.parse(modelMetadata(b).edits).map((r: { target: string }) => r.target), ["Santiago", "Merkel"]);
});

test("--resume accepts the run's own settings repeated and names the one that would change; an unwritable run folder fails before training", () => {
  const dir = tmp("resume-flags");
  const run = path.join(dir, "run");
  assertOk(mend(["train-editor", "--run-dir", run, "--out", path.join(dir, "e"), "--steps", "1", "--rank", "16", "--accumulate", "2"]), "first run");
  assertOk(mend(["train-editor", "--resume", "--run-dir", run, "--steps", "2", "--rank", "16", "--accumulate", "2"]), "the same --rank and --accumulate");
  assertFails(mend(["train-editor", "--resume", "--run-dir", run, "--steps", "3", "--rank", "32"]), /--rank cannot change when resuming: .*--rank was 16/, "another --rank");
  const file = path.join(dir, "a-file");
  fs.writeFileSync(file, "");
  const t0 = Date.now();
  assertFails(mend(["train-editor", "--run-dir", path.join(file, "run"), "--steps", "1", "--rank", "16"]), /cannot create the run folder/, "a run folder inside a file");
  assert.ok(Date.now() - t0 < 30_000, "before any training step");
});
