/**
 * Editor folders: `config.json` (editor config, the base model it was trained for, statistics
 * counts, training summary) and `editor.safetensors` (network weights, edit learning rates, and the
 * normalisation statistics). Unlike the official code, the statistics are part of the checkpoint,
 * so a resumed or loaded editor normalises exactly as it did when saved.
 * Loading validates the editor against the base model it is applied to: its shapes, and the
 * fingerprint (SHA-256 of the parameters) of the base model it was trained for. A folder is
 * written as one unit with a manifest that loading checks (model/checkpointFolder.ts).
 *
 * An editor with hooks (hooks.ts) saves what they need: `extensions` in config.json and tensors
 * under their own names in editor.safetensors. Loading such a folder needs an `attach` function
 * that rebuilds the hooks (src/extensions `attachExtensions`); without one it is refused, so an
 * editor is never silently used without the additions it was trained with.
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { GPT2Config } from "../model/config";
import { createEditor, disposeEditor, Editor, EditorConfig, editorVariables, validateEditorConfig } from "./editor";
import { Params } from "../model/gpt";
import { recoverForRead, verifyFolder, writeFolder } from "../model/checkpointFolder";
import { paramsFingerprint } from "../model/gpt";
import { decodeSafetensors, encodeSafetensors, RawTensor, readSafetensors } from "../model/safetensors";
import { disposeStats } from "./stats";
import { checkedFields, field, fieldError, inFile, isJsonObject, parseJson, readJsonFile } from "../model/jsonFile";

export interface EditorFolderConfig {
  format: "mend-ts-editor";
  editor: EditorConfig;
  /** What the editor was trained on: checked on load. */
  base: {
    n_embd: number;
    n_layer: number;
    vocab_size: number;
    shapes: Record<string, number[]>;
    /** SHA-256 of the base model's parameters (`paramsFingerprint`): the editor is refused for another base. */
    fingerprint?: string;
  };
  stats: Record<string, { count: number }>;
  /** What the editor's hooks saved (absent for an official editor). */
  extensions?: Record<string, unknown>;
  training?: Record<string, unknown>;
}

/**
 * Rebuilds an editor's hooks from what they saved: `extensions` (config.json) and `tensors`
 * (the editor.safetensors entries the core does not know, as float32 tensors the function takes
 * ownership of). Sets `editor.hooks`.
 */
export type AttachHooks = (editor: Editor, extensions: Record<string, unknown>, tensors: Record<string, tf.Tensor>) => void;

function statsEntries(e: Editor): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const n of Object.values(e.nets)) {
    out[`${n.key}.stats.u_mean`] = n.stats.u.mean;
    out[`${n.key}.stats.u_m2`] = n.stats.u.m2;
    out[`${n.key}.stats.delta_mean`] = n.stats.delta.mean;
    out[`${n.key}.stats.delta_m2`] = n.stats.delta.m2;
  }
  return out;
}

/** The files of an editor folder (name -> bytes). */
export function editorFiles(e: Editor, baseConfig: GPT2Config, baseParams: Readonly<Params>, training?: Record<string, unknown>): Record<string, Buffer> {
  const { net, editLrs } = editorVariables(e);
  const ext = e.hooks?.save?.();
  const all: Record<string, tf.Tensor> = { ...net, ...editLrs, ...statsEntries(e), ...(ext?.tensors ?? {}) };
  const raw: Record<string, RawTensor> = {};
  for (const [k, t] of Object.entries(all)) raw[k] = { dtype: "F32", shape: t.shape, data: t.dataSync() as Float32Array };
  const cfg: EditorFolderConfig = {
    format: "mend-ts-editor",
    editor: e.config,
    base: {
      n_embd: baseConfig.n_embd,
      n_layer: baseConfig.n_layer,
      vocab_size: baseConfig.vocab_size,
      shapes: Object.fromEntries(e.config.innerParams.map((n) => [n, baseParams[n].shape])),
      fingerprint: paramsFingerprint(baseParams),
    },
    stats: Object.fromEntries(Object.values(e.nets).map((n) => [n.key, { count: n.stats.count }])),
    ...(ext ? { extensions: ext.config } : {}),
    training,
  };
  return {
    "editor.safetensors": encodeSafetensors(raw, { format: "mend-ts-editor" }),
    "config.json": Buffer.from(JSON.stringify(cfg, null, 2) + "\n"),
  };
}

/** Save an editor folder as one unit (model/checkpointFolder.ts). */
export function saveEditor(dir: string, e: Editor, baseConfig: GPT2Config, baseParams: Readonly<Params>, training?: Record<string, unknown>): void {
  writeFolder(dir, "editor", editorFiles(e, baseConfig, baseParams, training));
}

/** config.json of an editor folder, its fields checked as data (types; the editor config by `createEditor`). */
function checkedFolderConfig(raw: unknown, file: string): EditorFolderConfig {
  const obj = isJsonObject;
  if (!obj(raw)) throw new Error(`${file}: expected an object, got ${JSON.stringify(raw)?.slice(0, 40)}`);
  const c = raw as unknown as EditorFolderConfig;
  if (c.format !== "mend-ts-editor") throw new Error(`${file}: not a mend-ts editor config (format ${JSON.stringify(c.format)})`);
  if (!obj(c.editor)) throw new Error(`${file}: "editor" (the editor config) must be an object`);
  inFile(file, () => validateEditorConfig(c.editor));
  if (!obj(c.base)) throw new Error(`${file}: "base" (what the editor was trained for) must be an object`);
  checkedFields(c.base, file, { n_embd: field.size, n_layer: field.size, vocab_size: field.size, shapes: field.object, fingerprint: field.optional(field.string) }, "base.");
  for (const name of c.editor.innerParams) {
    const shape = Object.prototype.hasOwnProperty.call(c.base.shapes, name) ? c.base.shapes[name] : undefined;
    if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => field.size.ok(d))) throw fieldError(file, `base.shapes[${JSON.stringify(name)}]`, "the edited weight's shape (two positive integers)", shape);
  }
  checkedFields(c.stats, file, {}, "stats.");
  for (const [key, s] of Object.entries(c.stats)) checkedFields(s, file, { count: field.count }, `stats[${JSON.stringify(key)}].`);
  if (c.extensions !== undefined && !obj(c.extensions)) throw new Error(`${file}: extensions must be an object`);
  return c;
}

/**
 * Load an editor folder for a base model. Throws a clear error when the folder is missing, a file
 * is bad, or the editor does not fit the base model (other config, missing weight, other shape).
 * The caller owns the editor (`disposeEditor`).
 */
export function loadEditor(dir: string, baseConfig: GPT2Config, baseParams: Readonly<Params>, attach?: AttachHooks, opts: { allowBaseMismatch?: boolean } = {}): Editor {
  const cfgPath = path.join(dir, "config.json");
  recoverForRead(dir);
  if (!fs.existsSync(dir) || !fs.existsSync(cfgPath)) {
    throw new Error(`editor folder "${dir}" not found (expected config.json and editor.safetensors); run "mend train-editor" or pass --editor`);
  }
  verifyFolder(dir, ["editor", "editor-run"]);
  const cfg = checkedFolderConfig(readJsonFile(cfgPath), cfgPath);
  checkEditorFits(cfg, dir, baseConfig, baseParams, attach, opts);
  return editorFromParts(cfg, readSafetensors(path.join(dir, "editor.safetensors")).tensors, dir, attach);
}

/**
 * An editor from the bytes of an editor folder (config.json, editor.safetensors), as the browser
 * lab fetches them (their sizes and SHA-256 checked against the manifest by the caller), for a base
 * model: the same checks as `loadEditor`. `where` names the folder in errors. The caller owns it.
 */
export function editorFromFiles(files: Readonly<Record<string, Uint8Array>>, where: string, baseConfig: GPT2Config, baseParams: Readonly<Params>, attach?: AttachHooks, opts: { allowBaseMismatch?: boolean } = {}): Editor {
  for (const name of ["config.json", "editor.safetensors"]) if (!files[name]) throw new Error(`${where}/${name}: file not found`);
  const cfgPath = `${where}/config.json`;
  const cfg = checkedFolderConfig(parseJson(new TextDecoder().decode(files["config.json"]), cfgPath), cfgPath);
  checkEditorFits(cfg, where, baseConfig, baseParams, attach, opts);
  return editorFromParts(cfg, decodeSafetensors(files["editor.safetensors"], `${where}/editor.safetensors`).tensors, where, attach);
}

/** Throws unless the editor of folder `dir` (its checked config) fits the base model. */
function checkEditorFits(cfg: EditorFolderConfig, dir: string, baseConfig: GPT2Config, baseParams: Readonly<Params>, attach: AttachHooks | undefined, opts: { allowBaseMismatch?: boolean }): void {
  if (cfg.extensions && !attach) {
    throw new Error(`editor "${dir}" was trained with additions to MEND (${Object.keys(cfg.extensions).join(", ")}); load it with extensions.loadEditor (src/extensions), which rebuilds them`);
  }
  for (const k of ["n_embd", "n_layer", "vocab_size"] as const) {
    if (cfg.base[k] !== baseConfig[k]) {
      throw new Error(`editor "${dir}" was trained for a base model with ${k} = ${cfg.base[k]}, but this model has ${k} = ${baseConfig[k]}`);
    }
  }
  const fp = cfg.base.fingerprint;
  if (fp && !opts.allowBaseMismatch) {
    const have = paramsFingerprint(baseParams);
    if (have !== fp) throw new Error(`editor "${dir}" was trained for the base model with fingerprint ${fp.slice(0, 12)}, but this base model's is ${have.slice(0, 12)} (another or a changed model); retrain the editor for it, or pass --allow-base-mismatch`);
  }
  for (const name of cfg.editor.innerParams) {
    const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k); // never a prototype key ("__proto__")
    const w = own(baseParams, name) ? baseParams[name] : undefined;
    if (!w) throw new Error(`editor "${dir}" edits ${JSON.stringify(name)}, which the base model does not have`);
    const want = own(cfg.base.shapes, name) ? cfg.base.shapes[name] : undefined;
    if (!want || want.join("x") !== w.shape.join("x")) throw new Error(`editor "${dir}" expects "${name}" of shape [${want}], the base model has [${w.shape}]`);
  }
}

/** The editor of a checked folder config and its tensors (`dir` names the folder in errors). */
function editorFromParts(cfg: EditorFolderConfig, tensors: Record<string, RawTensor>, dir: string, attach?: AttachHooks): Editor {
  const cfgPath = `${dir}/config.json`;
  const editor = createEditor(cfg.editor, cfg.base.shapes, 0);
  try {
    const { net, editLrs } = editorVariables(editor);
    const vars: Record<string, tf.Variable> = { ...net, ...editLrs };
    const expected = [...Object.keys(vars), ...Object.keys(statsEntries(editor))];
    const missing = expected.filter((k) => !tensors[k]);
    const extra = Object.keys(tensors).filter((k) => !expected.includes(k));
    if (missing.length) throw new Error(`${dir}/editor.safetensors: missing tensor(s) ${missing.join(", ")}`);
    if (extra.length && !cfg.extensions) throw new Error(`${dir}/editor.safetensors: unexpected tensor(s) ${extra.join(", ")}: not of the editor ${cfgPath} describes (innerParams ${cfg.editor.innerParams.join(", ")})`);
    const check = (k: string, shape: number[]) => {
      const t = tensors[k];
      if (t.shape.join("x") !== shape.join("x")) throw new Error(`${dir}/editor.safetensors: "${k}" has shape [${t.shape}], expected [${shape}]`);
      if (t.data.some((x) => !Number.isFinite(x))) throw new Error(`${dir}/editor.safetensors: "${k}" contains NaN or Inf`);
      return tf.tensor(t.data, t.shape, "float32");
    };
    for (const [k, v] of Object.entries(vars)) {
      const t = check(k, v.shape);
      v.assign(t);
      t.dispose();
    }
    for (const n of Object.values(editor.nets)) {
      const count = cfg.stats[n.key]?.count;
      if (typeof count !== "number" || count < 0) throw new Error(`${cfgPath}: no statistics count for editor net ${n.key}`);
      const s = n.stats;
      const fresh = {
        u: { mean: check(`${n.key}.stats.u_mean`, s.u.mean.shape), m2: check(`${n.key}.stats.u_m2`, s.u.m2.shape) },
        delta: { mean: check(`${n.key}.stats.delta_mean`, s.delta.mean.shape), m2: check(`${n.key}.stats.delta_m2`, s.delta.m2.shape) },
      };
      disposeStats(s);
      n.stats = { count, u: fresh.u as typeof s.u, delta: fresh.delta as typeof s.delta };
    }
    if (cfg.extensions && attach) {
      const own = Object.fromEntries(extra.map((k) => [k, check(k, tensors[k].shape)]));
      attach(editor, cfg.extensions, own);
    }
  } catch (e) {
    disposeEditor(editor);
    throw e;
  }
  return editor;
}

/** The training summary stored in an editor folder's config.json (or undefined). */
export function editorTrainingInfo(dir: string): Record<string, unknown> | undefined {
  const p = path.join(dir, "config.json");
  recoverForRead(dir);
  return fs.existsSync(p) ? (readJsonFile(p) as EditorFolderConfig | null)?.training : undefined;
}
