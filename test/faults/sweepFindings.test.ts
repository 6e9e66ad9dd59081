/**
 * What the generated fault sweep (scripts/fault-sweep.js: every field of every JSON file `mend` reads
 * back damaged in turn) found, each now a message naming the file and field: a safetensors header
 * entry that is not an object or has a prototype key for a dtype, a layer-norm epsilon that is text or
 * no epsilon, an editor config whose sizes are impossible or whose shapes miss a weight, and an edit
 * ledger with an empty prompt or state tensor names that are empty. Before, these were raw TypeErrors
 * ("Cannot read properties of null (reading 'dtype')", "Argument 'b' passed to 'add' must be numeric")
 * or results computed without a word (an epsilon of 1.5, a statistics count of 1e300).
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { validateConfig, DEFAULT_GPT2_CONFIG } from "../../dist/model/config";
import { createKe, DEFAULT_KE_CONFIG, disposeKe, loadKe, saveKe } from "../../dist/baselines/ke";
import { setup, tinyModel } from "../helpers";
import { decodeSafetensors, encodeSafetensors } from "../../dist/model/safetensors";
import { assertFails, assertOk, copyCheckpoint, mend, tmp } from "./helpers";

/** A safetensors file of one tensor whose header entry is replaced by `entry`. */
function withHeaderEntry(entry: unknown): Uint8Array {
  const good = Buffer.from(encodeSafetensors({ x: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } }, {}));
  const n = Number(good.readBigUInt64LE(0));
  const header = JSON.parse(good.subarray(8, 8 + n).toString("utf8"));
  header.x = entry;
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, good.subarray(8 + n)]);
}

test("a safetensors header entry that is null, or names a prototype key as its dtype, is named", () => {
  assert.throws(() => decodeSafetensors(withHeaderEntry(null), "f.safetensors"), /f\.safetensors: tensor "x" must be described by \{"dtype", "shape", "data_offsets"\}, got null/);
  assert.throws(() => decodeSafetensors(withHeaderEntry({ dtype: "constructor", shape: [2], data_offsets: [0, 8] }), "f.safetensors"), /f\.safetensors: tensor "x" has dtype "constructor"/);
});

test("config.json: a layer-norm epsilon that is text or no epsilon is refused", () => {
  for (const eps of ["7", 1.5, 1e300]) {
    assert.throws(() => validateConfig({ ...DEFAULT_GPT2_CONFIG, vocab_size: 10, layer_norm_epsilon: eps as number }), /config\.json: layer_norm_epsilon must be a small positive number \(at most 0\.01; GPT-2's is 1e-5\)/, String(eps));
  }
  assert.doesNotThrow(() => validateConfig({ ...DEFAULT_GPT2_CONFIG, vocab_size: 10, layer_norm_epsilon: 1e-5 }));
});

test("an editor's config.json: impossible base sizes, a missing shape and a count of 1e300 are refused by field", () => {
  const dir = tmp("editor-fields");
  const cases: [string, (c: Record<string, any>) => void, RegExp][] = [
    ["n_embd -1", (c) => (c.base.n_embd = -1), /config\.json: base\.n_embd must be a positive integer, got -1/],
    ["n_layer 1e300", (c) => (c.base.n_layer = 1e300), /config\.json: base\.n_layer must be a positive integer, got 1e\+300/],
    ["a shape missing", (c) => delete c.base.shapes["h.1.mlp.c_fc.weight"], /config\.json: base\.shapes\["h\.1\.mlp\.c_fc\.weight"\] must be the edited weight's shape/],
    ["count 1e300", (c) => (c.stats["128x512"].count = 1e300), /config\.json: stats\["128x512"\]\.count must be a non-negative integer, got 1e\+300/],
    ["rank 1e300", (c) => (c.editor.rank = 1e300), /config\.json: editor config: rank must be a positive integer/],
  ];
  try {
    for (const [what, change, message] of cases) {
      const editor = copyCheckpoint("editor", path.join(dir, what.replace(/\W+/g, "-")));
      fs.rmSync(path.join(editor, "manifest.json"));
      const cfg = JSON.parse(fs.readFileSync(path.join(editor, "config.json"), "utf8"));
      change(cfg);
      fs.writeFileSync(path.join(editor, "config.json"), JSON.stringify(cfg));
      assertFails(mend(["edit", "--editor", editor, "--prompt", "The capital of Spain is", "--target", "Rome"]), message, what);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("an edit ledger with an empty prompt, or an empty state tensor name, is refused by field", () => {
  const dir = tmp("ledger-fields");
  try {
    const saved = path.join(dir, "e");
    assertOk(mend(["edit", "--method", "UltraEdit", "--prompt", "The capital of Spain is", "--target", "Rome", "--save", saved]), "UltraEdit --save");
    fs.rmSync(path.join(saved, "manifest.json"));
    const file = path.join(saved, "edits.json");
    const ledger = fs.readFileSync(file, "utf8");
    const damage = (change: (l: any) => void) => {
      const l = JSON.parse(ledger);
      change(l);
      fs.writeFileSync(file, JSON.stringify(l));
    };
    damage((l) => (l.entries[0].requests[0].prompt = ""));
    assertFails(mend(["ledger", "--model", saved]), /edits\.json: entries\[0\]\.requests must be a non-empty list of \{"prompt", "target"\} non-empty strings/, "empty prompt");
    damage((l) => (l.entries[0].state.tensors[1] = ""));
    assertFails(mend(["ledger", "--model", saved]), /edits\.json: entries\[0\]\.state\.tensors must be a list of distinct tensor names/, "empty tensor name");
    damage((l) => l.entries[0].state.tensors.pop());
    assertFails(mend(["ledger", "--model", saved]), /edits\.json: edit 1's UltraEdit state must hold the tensors u_mean, u_m2, delta_mean, delta_m2; delta_m2 missing/, "a state tensor left out");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a KE folder's config.json whose values fail where they are used is named, as is an empty fingerprint", async () => {
  await setup();
  const m = tinyModel(53, { initializer_range: 0.2 });
  const ke = createKe(m, { ...DEFAULT_KE_CONFIG, hidden: 16, condition: 12, innerParams: ["h.1.mlp.c_fc.weight"] }, 3);
  const dir = tmp("ke-in-file");
  try {
    const at = path.join(dir, "ke");
    saveKe(at, ke, m);
    fs.rmSync(path.join(at, "manifest.json"));
    const cfg = JSON.parse(fs.readFileSync(path.join(at, "config.json"), "utf8"));
    fs.writeFileSync(path.join(at, "config.json"), JSON.stringify({ ...cfg, ke: { ...cfg.ke, innerParams: [] } }));
    assert.throws(() => loadKe(at, m), /ke\/config\.json: KE config: innerParams is empty/);
    fs.writeFileSync(path.join(at, "config.json"), JSON.stringify({ ...cfg, base: { ...cfg.base, fingerprint: "" } }));
    assert.throws(() => loadKe(at, m), /config\.json: base\.fingerprint must be a SHA-256 in hex \(64 characters\) or absent, got ""/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    disposeKe(ke);
    m.dispose();
  }
});
