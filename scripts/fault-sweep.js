#!/usr/bin/env node
/**
 * The generated fault sweep: every JSON file `mend` reads back (an edit ledger, its safetensors headers, a
 * model's and an editor's config.json, KE and ENN configs, a trainer state) is damaged one field at a time
 * (removed, null, another type, an impossible number, a prototype key; the whole file empty, cut short or
 * another type), the folder's manifest taken away so the damage is read, and the commands that read the
 * file are run on it. Each run is sorted by what a user sees:
 *
 *   clear     exit 1 or 2 with a message that names the damaged file
 *   unclear   exit 1 or 2 without naming it
 *   crash     a JavaScript TypeError/RangeError/ReferenceError/SyntaxError reached the user, or a signal
 *   silent    exit 0 with output that differs from the same command on the undamaged folder
 *   harmless  exit 0 with the same output (the field is not read by that command)
 *
 * "silent" runs are the ones to read by hand: a damaged field that changes a result without a word.
 *
 *   node scripts/fault-sweep.js [--out DIR] [--jobs N] [--only TARGET,...]
 *
 * writes DIR/runs.jsonl as it goes, then DIR/results.json (every run) and DIR/summary.md (counts per
 * target and class, and every run that is not clear or harmless). Needs the built library (npm run build) and the shipped checkpoints.
 */
"use strict";
const { spawn, spawnSync } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const ROOT = path.join(__dirname, "..");
const MEND = path.join(ROOT, "bin", "mend.js");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
const OUT = path.resolve(arg("--out", path.join(ROOT, "runs", `fault-sweep-${stamp}`)));
const JOBS = Number(arg("--jobs", String(Math.max(1, os.cpus().length))));
const ONLY = arg("--only", "") ? new Set(arg("--only", "").split(",")) : null;
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), "fault-sweep-"));

/** Run `mend args` and resolve to its exit status (or signal), stdout and stderr. */
function run(args, timeoutMs = 300_000) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MEND, ...args], { cwd: ROOT, env: { ...process.env, MEND_DEBUG: "1" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

function mustRun(args) {
  const r = spawnSync(process.execPath, [MEND, ...args], { cwd: ROOT, encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`mend ${args.join(" ")} failed while building the sweep's folders:\n${r.stderr}`);
}

// ---- the damage --------------------------------------------------------------------------------------

/** Every path into `value` worth damaging: arrays of more than 4 items by their first, maps of weight or tensor names by their first two. */
function paths(value, at = [], out = []) {
  if (at.length > 0) out.push(at);
  if (at.length >= 6 || value === null || typeof value !== "object") return out;
  if (Array.isArray(value)) {
    const n = value.length <= 4 ? value.length : 1;
    for (let i = 0; i < n; i++) paths(value[i], [...at, i], out);
    return out;
  }
  const keys = Object.keys(value);
  // maps of weight or tensor names (a config's shapes, a safetensors header): their first two entries stand for the rest
  const names = keys.filter((k) => k !== "__metadata__");
  const nameMap = names.length > 2 && names.every((k) => /\.(weight|bias)$|^wte|^wpe|\//.test(k));
  for (const k of nameMap ? [...keys.filter((k) => !names.includes(k)), ...names.slice(0, 2)] : keys) paths(value[k], [...at, k], out);
  return out;
}

/** The values a field is replaced by: null, another type, and for numbers the impossible ones. */
function replacements(old) {
  const r = [["null", null]];
  if (typeof old === "number") r.push(["text", "7"], ["-1", -1], ["1.5", 1.5], ["1e300", 1e300]);
  else if (typeof old === "string") r.push(["number", 123], ["empty text", ""]);
  else if (typeof old === "boolean") r.push(["text", "true"]);
  else if (Array.isArray(old)) r.push(["object", {}], ["empty array", []]);
  else r.push(["array", []], ["number", 5]);
  return r;
}

function getAt(value, at) {
  return at.reduce((v, k) => v[k], value);
}

/** A deep copy of `value` with `at` set to `to` (or removed when `to` is REMOVE). */
const REMOVE = Symbol("remove");
function setAt(value, at, to) {
  const copy = JSON.parse(JSON.stringify(value));
  const parent = getAt(copy, at.slice(0, -1));
  const key = at[at.length - 1];
  if (to !== REMOVE) parent[key] = to;
  else if (Array.isArray(parent)) parent.splice(key, 1);
  else delete parent[key];
  return copy;
}

/** Every damaged version of a JSON document: [what, the damaged text]. */
function damagedJson(doc, text) {
  const out = [
    ["file empty", ""],
    ["file cut short", text.slice(0, Math.floor(text.length / 2))],
    ["file null", "null"],
    ["file an array", "[]"],
    ["file a number", "5"],
    ["file {}", "{}"],
    ["__proto__ key at the top", text.replace(/^\s*\{/, '{"__proto__": {"polluted": 1},')],
  ];
  for (const at of paths(doc)) {
    const name = at.join(".");
    const old = getAt(doc, at);
    out.push([`${name} removed`, JSON.stringify(setAt(doc, at, REMOVE))]);
    for (const [what, to] of replacements(old)) out.push([`${name} = ${what}`, JSON.stringify(setAt(doc, at, to))]);
    if (old && typeof old === "object" && !Array.isArray(old)) {
      out.push([`${name} with a "constructor" key`, JSON.stringify(setAt(doc, at, { constructor: 1, ...old }))]);
    }
  }
  return out;
}

/** A safetensors file's bytes split into its JSON header and its data. */
function splitSafetensors(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")), data: bytes.subarray(8 + n) };
}

function joinSafetensors(headerText, data) {
  const h = Buffer.from(headerText, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** Every damaged version of a safetensors file, its header damaged as JSON, plus a short file. */
function damagedSafetensors(bytes) {
  const { header, data } = splitSafetensors(bytes);
  const out = [
    ["file empty", Buffer.alloc(0)],
    ["file of 7 bytes", bytes.subarray(0, 7)],
    ["header length past the end", (() => { const b = Buffer.from(bytes); b.writeBigUInt64LE(BigInt(bytes.length), 0); return b; })()],
    ["data cut short", bytes.subarray(0, bytes.length - 16)],
  ];
  for (const [what, text] of damagedJson(header, JSON.stringify(header))) {
    if (what.startsWith("file ")) continue;
    out.push([`header: ${what}`, joinSafetensors(text, data)]);
  }
  return out;
}

// ---- the folders and the commands that read them ---------------------------------------------------

/** The ledger folder: MEND, AlphaEdit, LocFT-BF and UltraEdit edits one after another on the shipped base. */
function ledgerFolder() {
  const dir = path.join(WORK, "ledger");
  if (fs.existsSync(dir)) return dir;
  const steps = [
    ["MEND", "The president of the United States is", "Biden"],
    ["AlphaEdit", "The capital of France is", "Rome"],
    ["LocFT-BF", "The capital of France is", "Paris"],
    ["UltraEdit", "The president of the United States is", "Trump"],
  ];
  let from = path.join(ROOT, "checkpoints", "base");
  steps.forEach(([method, prompt, target], i) => {
    const to = path.join(WORK, i === steps.length - 1 ? "ledger" : `ledger-${i + 1}`);
    mustRun(["edit", "--model", from, "--method", method, "--prompt", prompt, "--target", target, "--save", to]);
    from = to;
  });
  return dir;
}

function copyOf(dir, what) {
  const to = path.join(WORK, `${what}-${Math.random().toString(36).slice(2, 10)}`);
  fs.cpSync(dir, to, { recursive: true });
  return to;
}

const editArgs = ["--prompt", "The capital of Spain is", "--target", "Rome"];
const evalArgs = (method, flag, dir, out) => ["eval", "--methods", method, flag, dir, "--limit", "2", "--batch-sizes", "1", "--sequential", "0", "--jobs", "1", "--out", out, "--json"];

/** Each target: the folder to copy, the file damaged in it, and the commands run on each damaged copy. */
const TARGETS = [
  {
    name: "ledger edits.json",
    folder: ledgerFolder,
    file: "edits.json",
    commands: {
      list: (dir) => ["ledger", "--model", dir],
      "edit (UltraEdit)": (dir, out) => ["edit", "--model", dir, "--method", "UltraEdit", ...editArgs, "--save", out],
    },
  },
  {
    name: "ledger edits.safetensors",
    folder: ledgerFolder,
    file: "edits.safetensors",
    binary: true,
    commands: { "undo 1": (dir, out) => ["ledger", "--model", dir, "--undo", "1", "--save", out] },
  },
  {
    name: "ledger model.safetensors",
    folder: ledgerFolder,
    file: "model.safetensors",
    binary: true,
    commands: { predict: (dir) => ["predict", "--model", dir, "--prompt", "The capital of France is"] },
  },
  {
    name: "model config.json",
    folder: () => path.join(ROOT, "checkpoints", "base"),
    file: "config.json",
    commands: {
      predict: (dir) => ["predict", "--model", dir, "--prompt", "The capital of France is"],
      "edit (MEND)": (dir, out) => ["edit", "--model", dir, ...editArgs, "--save", out],
    },
  },
  {
    name: "editor config.json",
    folder: () => path.join(ROOT, "checkpoints", "editor"),
    file: "config.json",
    commands: { "edit (MEND)": (dir, out) => ["edit", "--editor", dir, ...editArgs, "--save", out] },
  },
  {
    name: "KE config.json",
    folder: () => path.join(ROOT, "checkpoints", "ke"),
    file: "config.json",
    commands: { "eval (KE)": (dir, out) => evalArgs("KE", "--ke", dir, out) },
  },
  {
    name: "ENN config.json",
    folder: () => path.join(ROOT, "checkpoints", "enn"),
    file: "config.json",
    commands: { "eval (ENN)": (dir, out) => evalArgs("ENN", "--enn", dir, out) },
  },
];

// ---- sorting what came back ----------------------------------------------------------------------------

const JS_ERROR = /^(TypeError|RangeError|ReferenceError|SyntaxError|AssertionError|EvalError)\b/m;

/** The text a user compares: paths replaced, timings and the backend line dropped. */
function normalise(text, dir, out) {
  return text
    .split(dir).join("<DIR>")
    .split(out).join("<OUT>")
    .split("\n")
    .filter((l) => !/^backend:/.test(l))
    .join("\n")
    .replace(/\d+(\.\d+)?\s*(ms|s)\b/g, "<time>")
    .replace(/"(\w*_ms|\w*_sec|time|seconds|ms)":\s*[^,}]+/g, '"$1":<time>');
}

function sortRun(r, file, baseline, dir, out) {
  const message = (r.stderr.match(/^mend [\w-]+: .*$/m) || [r.stderr.trim().split("\n").pop() || ""])[0];
  if (r.signal || ![0, 1, 2].includes(r.status)) return { class: "crash", message: `${r.signal || `exit ${r.status}`}: ${message}` };
  if (r.status !== 0) {
    // MEND_DEBUG prints the stack after the message: its first line names the error's type.
    const stack = r.stderr.slice(r.stderr.indexOf(message) + message.length);
    if (JS_ERROR.test(stack.trimStart())) return { class: "crash", message };
    return { class: message.includes(path.basename(file)) ? "clear" : "unclear", message };
  }
  const same = normalise(r.stdout, dir, out) === baseline;
  return { class: same ? "harmless" : "silent", message: same ? "" : r.stdout.slice(0, 1500) };
}

// ---- the sweep -------------------------------------------------------------------------------------------

async function pool(items, jobs, work) {
  let next = 0;
  const runners = Array.from({ length: jobs }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(runners);
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const targets = TARGETS.filter((t) => !ONLY || ONLY.has(t.name));
  const results = [];
  const commit = spawnSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" }).stdout.trim();
  const started = Date.now();
  for (const t of targets) {
    const source = t.folder();
    const pristine = copyOf(source, "pristine");
    fs.rmSync(path.join(pristine, "manifest.json"), { force: true });
    const baselines = {};
    for (const [cmd, args] of Object.entries(t.commands)) {
      const out = path.join(WORK, `out-${Math.random().toString(36).slice(2, 10)}`);
      const r = await run(args(pristine, out));
      if (r.status !== 0) throw new Error(`${t.name}: "${cmd}" fails on the undamaged folder:\n${r.stderr}`);
      baselines[cmd] = normalise(r.stdout, pristine, out);
      fs.rmSync(out, { recursive: true, force: true });
    }
    const original = fs.readFileSync(path.join(pristine, t.file));
    const cases = t.binary ? damagedSafetensors(original) : damagedJson(JSON.parse(original.toString("utf8")), original.toString("utf8"));
    const runs = cases.flatMap(([damage, content]) => Object.keys(t.commands).map((cmd) => ({ damage, content, cmd })));
    process.stderr.write(`${t.name}: ${cases.length} damaged files x ${Object.keys(t.commands).length} commands\n`);
    let done = 0;
    await pool(runs, JOBS, async ({ damage, content, cmd }) => {
      const dir = copyOf(pristine, "case");
      const out = path.join(WORK, `out-${Math.random().toString(36).slice(2, 10)}`);
      fs.writeFileSync(path.join(dir, t.file), content);
      const r = await run(t.commands[cmd](dir, out));
      const sorted = sortRun(r, t.file, baselines[cmd], dir, out);
      const result = { target: t.name, damage, command: cmd, status: r.status, signal: r.signal, ...sorted };
      results.push(result);
      fs.appendFileSync(path.join(OUT, "runs.jsonl"), JSON.stringify(result) + "\n"); // readable while the sweep runs
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(out, { recursive: true, force: true });
      if (++done % 25 === 0) process.stderr.write(`  ${done}/${runs.length}\n`);
    });
  }
  const order = (r) => `${r.target}\u0000${r.damage}\u0000${r.command}`;
  results.sort((a, b) => (order(a) < order(b) ? -1 : 1));
  const seconds = Math.round((Date.now() - started) / 1000);
  fs.writeFileSync(path.join(OUT, "results.json"), JSON.stringify({ commit, date: new Date().toISOString(), seconds, runs: results }, null, 1) + "\n");
  fs.writeFileSync(path.join(OUT, "summary.md"), summary(results, commit, seconds));
  process.stdout.write(summary(results, commit, seconds));
  fs.rmSync(WORK, { recursive: true, force: true });
}

const CLASSES = ["clear", "unclear", "crash", "silent", "harmless"];

function summary(results, commit, seconds) {
  const lines = [`# Fault sweep (commit ${commit.slice(0, 7)}, ${results.length} runs, ${seconds} s)`, "", `| target | ${CLASSES.join(" | ")} |`, `|---|${CLASSES.map(() => "---:").join("|")}|`];
  const targets = [...new Set(results.map((r) => r.target))];
  for (const t of [...targets, "all"]) {
    const of = results.filter((r) => t === "all" || r.target === t);
    lines.push(`| ${t} | ${CLASSES.map((c) => of.filter((r) => r.class === c).length).join(" | ")} |`);
  }
  for (const c of ["crash", "silent", "unclear"]) {
    const of = results.filter((r) => r.class === c);
    if (of.length === 0) continue;
    lines.push("", `## ${c} (${of.length})`, "");
    for (const r of of) lines.push(`- ${r.target} / ${r.damage} / ${r.command}: ${(r.message || "").split("\n").slice(0, 3).join(" ⏎ ").slice(0, 300)}`);
  }
  return lines.join("\n") + "\n";
}

main().catch((e) => {
  console.error(e.stack || String(e));
  fs.rmSync(WORK, { recursive: true, force: true });
  process.exit(1);
});
