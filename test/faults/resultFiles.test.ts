/**
 * What a run leaves and later reads, checked as data: KE and ENN folder configs, trainer states,
 * `mend paper`'s per-run result and evaluation files and its results.json. Each damaged file is a
 * message naming the file and the field (before: TypeErrors, or a null result reported as "trained
 * (? steps)" with exit 0).
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { createEnn, DEFAULT_ENN_CONFIG, disposeEnn, loadEnn, saveEnn } from "../../dist/baselines/enn";
import { createKe, DEFAULT_KE_CONFIG, disposeKe, loadKe, saveKe } from "../../dist/baselines/ke";
import { checkedRunEval, readPaperResults } from "../../dist/eval/paperResults";
import { setup, tinyModel } from "../helpers";
import { assertFails, mend, ROOT, tmp } from "./helpers";

const inner = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"];
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** `dir`/config.json rewritten by `change` (the folder's manifest removed, so the change is read). */
function damageConfig(dir: string, change: (c: Record<string, unknown>) => unknown): void {
  const file = path.join(dir, "config.json");
  fs.rmSync(path.join(dir, "manifest.json"), { force: true });
  fs.writeFileSync(file, JSON.stringify(change(JSON.parse(fs.readFileSync(file, "utf8")))));
}

type ConfigCase = [what: string, change: (c: Record<string, unknown>) => unknown, message: RegExp];

/** Each case: the folder saved by `save`, its config.json changed, then `load` must throw the message. */
function expectConfigErrors(prefix: string, cases: readonly ConfigCase[], save: (dir: string) => void, load: (dir: string) => unknown): void {
  const dir = tmp(prefix);
  try {
    for (const [what, change, message] of cases) {
      const at = path.join(dir, what.replace(/\W+/g, "-"));
      save(at);
      damageConfig(at, change);
      assert.throws(() => load(at), message, what);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test("a KE folder's config.json: null, a fingerprint that is a number, a hidden size that is text", async () => {
  await setup();
  const m = tinyModel(51, { initializer_range: 0.2 });
  const ke = createKe(m, { ...DEFAULT_KE_CONFIG, hidden: 16, condition: 12, innerParams: inner }, 3);
  try {
    expectConfigErrors(
      "ke-config",
      [
        ["null", () => null, /config\.json: the file must be an object, got null/],
        ["fingerprint 123", (c) => ({ ...c, base: { ...(c.base as object), fingerprint: 123 } }), /config\.json: base\.fingerprint must be a SHA-256 in hex \(64 characters\) or absent, got 123/],
        ["hidden 'x'", (c) => ({ ...c, ke: { ...(c.ke as object), hidden: "x" } }), /config\.json: ke\.hidden must be a positive integer, got "x"/],
        ["no ke", (c) => ({ ...c, ke: undefined }), /config\.json: ke must be an object, got undefined/],
      ],
      (at) => saveKe(at, ke, m),
      (at) => loadKe(at, m),
    );
  } finally {
    disposeKe(ke);
    m.dispose();
  }
});

test("an ENN folder's config.json: a fingerprint that is a number, step sizes that are null", async () => {
  await setup();
  const m = tinyModel(52, { initializer_range: 0.2 });
  const enn = createEnn(m, { ...DEFAULT_ENN_CONFIG, innerParams: inner });
  try {
    expectConfigErrors(
      "enn-config",
      [
        ["fingerprint 123", (c) => ({ ...c, base: { fingerprint: 123 } }), /config\.json: base\.fingerprint must be a SHA-256 in hex \(64 characters\), got 123/],
        ["editLr null", (c) => ({ ...c, enn: { ...(c.enn as object), editLr: null } }), /config\.json: enn\.editLr must be a finite number, got null/],
      ],
      (at) => saveEnn(at, enn, m),
      (at) => loadEnn(at, m),
    );
  } finally {
    disposeEnn(enn);
    m.dispose();
  }
});

test("--resume with a trainer_state.json that is null, or whose step is text, names the file and field", () => {
  const dir = tmp("trainer-state");
  const state = path.join(dir, "last", "trainer_state.json");
  fs.mkdirSync(path.dirname(state), { recursive: true });
  fs.writeFileSync(state, "null");
  assertFails(mend(["train-editor", "--resume", "--run-dir", dir]), new RegExp(`${esc(state)}: the file must be an object, got null`), "train-editor --resume, state null");
  fs.writeFileSync(state, JSON.stringify({ step: "12" }));
  assertFails(mend(["train-editor", "--resume", "--run-dir", dir]), new RegExp(`${esc(state)}: step must be a non-negative integer, got "12"`), "train-editor --resume, step text");
  fs.writeFileSync(state, "null");
  assertFails(mend(["pretrain", "--resume", "--run-dir", dir]), new RegExp(`${esc(state)}: the file must be an object, got null`), "pretrain --resume, state null");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("mend paper: a run's result file that is null or {} is refused by name, not reported as trained", () => {
  const dir = tmp("paper-result");
  for (const [text, message] of [
    ["null", /mend-s1\.json: the file must be an object, got null/],
    ["{}", /mend-s1\.json: steps must be a non-negative integer, got undefined/],
  ] as const) {
    fs.writeFileSync(path.join(dir, "mend-s1.json"), text);
    const r = mend(["paper", "--stage", "train", "--rows", "MEND", "--seeds", "1", "--runs", dir]);
    assertFails(r, message, `paper with mend-s1.json = ${text}`);
    assert.doesNotMatch(r.stderr, /trained \(\?/);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("paper results: an evaluation {} and a results.json whose run lost its summary name the field", () => {
  assert.throws(() => checkedRunEval({}, "runs/paper/mend-s1.eval.json"), /mend-s1\.eval\.json: row must be a string, got undefined/);
  const dir = tmp("paper-results");
  const res = JSON.parse(fs.readFileSync(path.join(ROOT, "docs", "paper", "results.json"), "utf8"));
  res.rows[0].runs[0].summary = {};
  const file = path.join(dir, "results.json");
  fs.writeFileSync(file, JSON.stringify(res));
  assert.throws(() => readPaperResults(file), /results\.json rows\[0\]\.runs\[0\]: summary\.n_edits must be a non-negative integer, got undefined/);
  fs.writeFileSync(file, "null");
  assert.throws(() => readPaperResults(file), /results\.json: the file must be an object, got null/);
  fs.rmSync(dir, { recursive: true, force: true });
});
