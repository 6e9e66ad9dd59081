/** The manifest decides what a folder is: names stay inside it, unlisted files do not slip in, the kind is checked; editor configs are checked as data. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { loadEditor } from "../../dist/mend/editorFolder";
import { loadModel } from "../../dist/model/modelFolder";
import { copyCheckpoint, ROOT, tmp } from "./helpers";

const manifestOf = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
const writeManifest = (dir: string, m: unknown) => fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(m));

test("manifest names outside the folder are refused before anything is read (no size of a foreign file is told)", () => {
  const base = copyCheckpoint("base", path.join(tmp("names"), "base"));
  const m = manifestOf(base);
  for (const evil of ["../../../etc/hostname", "/etc/hostname", "sub/file", "..", ""]) {
    writeManifest(base, { ...m, files: { ...m.files, [evil]: { bytes: 1, sha256: "00" } } });
    assert.throws(() => loadModel(base), (e: Error) => /which is not a file of this folder/.test(e.message) && !/bytes/.test(e.message), evil);
  }
});

test("a file the manifest does not list cannot change what loads; the manifest's kind is checked", () => {
  const dir = tmp("stray");
  const base = copyCheckpoint("base", path.join(dir, "base"));
  fs.writeFileSync(path.join(base, "tokenizer.json"), "{}");
  assert.throws(() => loadModel(base), /tokenizer\.json is in the folder but not in its manifest\.json/);
  fs.rmSync(path.join(base, "tokenizer.json"));
  fs.writeFileSync(path.join(base, "notes.txt"), "a user's notes"); // not a model file: ignored
  loadModel(base).dispose();
  writeManifest(base, { ...manifestOf(base), kind: "editor" });
  assert.throws(() => loadModel(base), /holds an editor, not a model or a pretrain-run/);
  const editor = copyCheckpoint("editor", path.join(dir, "editor"));
  writeManifest(editor, { ...manifestOf(editor), kind: "model" });
  const m = loadModel(path.join(ROOT, "checkpoints", "base"));
  assert.throws(() => loadEditor(editor, m.config, m.params), /holds a model, not an editor or an editor-run/);
  m.dispose();
});

test("malformed editor configs are clear errors, and a weight name never reaches a prototype", () => {
  const dir = tmp("editor-config");
  const m = loadModel(path.join(ROOT, "checkpoints", "base"));
  const cfg = JSON.parse(fs.readFileSync(path.join(ROOT, "checkpoints", "editor", "config.json"), "utf8"));
  const cases: [string, unknown, RegExp][] = [
    ["null", null, /config\.json: expected an object, got null/],
    ["no base", { ...cfg, base: undefined }, /"base" \(what the editor was trained for\) must be an object/],
    ["shapes", { ...cfg, base: { ...cfg.base, shapes: { x: "no" } } }, /base\.shapes\["h\.1\.mlp\.c_fc\.weight"\] must be the edited weight.s shape \(two positive integers\), got undefined/],
    ["stats", { ...cfg, stats: { a: { count: -1 } } }, /config\.json: stats\["a"\]\.count must be a non-negative integer, got -1/],
    ["__proto__", { ...cfg, editor: { ...cfg.editor, innerParams: ["__proto__"] } }, /base\.shapes\["__proto__"\] must be the edited weight.s shape/],
    ["constructor", { ...cfg, editor: { ...cfg.editor, innerParams: ["constructor"] } }, /base\.shapes\["constructor"\] must be the edited weight.s shape/],
    ["not a name", { ...cfg, editor: { ...cfg.editor, innerParams: [3] } }, /innerParams must be weight names, got 3/],
  ];
  for (const [name, value, message] of cases) {
    const ed = copyCheckpoint("editor", path.join(dir, name.replace(/\W/g, "_")));
    fs.rmSync(path.join(ed, "manifest.json")); // a folder without a manifest is read as it is
    fs.writeFileSync(path.join(ed, "config.json"), JSON.stringify(value));
    assert.throws(() => loadEditor(ed, m.config, m.params, undefined, { allowBaseMismatch: true }), message, name);
  }
  m.dispose();
});
