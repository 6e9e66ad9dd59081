/**
 * Our additions to the MEND editor, as hooks on an official editor (src/mend/hooks.ts), and the
 * editor folders that carry them. Each is opt-in, recorded in the editor folder's config.json under
 * `extensions`, and measured in docs/research-log.md:
 *
 *  - `keyPrecond` λ: key preconditioning, key = (ũ ∘ σ) P with P = s (C + λ s I)⁻¹ (keyPrecond.ts);
 *  - `batchPrecond` β: batch key decorrelation within an edit call (needs `keyPrecond`);
 *  - `batchLoss` "sum": the edit loss of a k-request call is the sum of each request's own
 *    token-mean (official: one mean over the call, so each request's δ shrinks as 1/k);
 *  - `rows` "target": only the labelled positions' rows feed the editor (targetRows.ts).
 *
 * `checkpoints/editor-batch` is an official editor with keyPrecond 1, batchPrecond 10 and
 * batchLoss "sum" (the batch-editor recipe, README).
 */
import * as tf from "@tensorflow/tfjs";
import { GPT2Config } from "../model/config";
import { Params } from "../model/gpt";
import { Editor, netFor } from "../mend/editor";
import { AttachHooks, loadEditor as loadOfficialEditor } from "../mend/editorFolder";
import { EditorHooks, KeyTransform } from "../mend/hooks";
import { preconditionedKeys } from "./keyPrecond";
import { targetRows } from "./targetRows";

export interface EditorExtensions {
  /** Key preconditioning with ridge λ (> 0). */
  keyPrecond?: number;
  /** Batch key decorrelation with strength β (> 0); needs keyPrecond. */
  batchPrecond?: number;
  /** "sum": each request's own token-mean, summed over the call. */
  batchLoss?: "sum";
  /** "target": only the labelled positions feed the editor. */
  rows?: "target";
}

/** Hooks made by this module: they remember their settings and P. */
export interface ExtensionHooks extends EditorHooks {
  extensions: Readonly<EditorExtensions>;
  /** P per edited weight [d_in, d_in], owned by the hooks (with keyPrecond). */
  precond?: Record<string, tf.Tensor2D>;
}

/** Throws on settings that are not valid extensions, naming the key. */
export function validateExtensions(x: EditorExtensions): void {
  const known = new Set(["keyPrecond", "batchPrecond", "batchLoss", "rows"]);
  const extra = Object.keys(x).filter((k) => !known.has(k));
  if (extra.length) throw new Error(`editor extensions: unknown key(s) ${extra.join(", ")} (known: ${[...known].join(", ")})`);
  if (x.keyPrecond !== undefined && !(Number.isFinite(x.keyPrecond) && x.keyPrecond > 0)) throw new Error(`editor extensions: keyPrecond (the ridge λ) must be a number > 0, got ${x.keyPrecond}`);
  if (x.batchPrecond !== undefined && !(Number.isFinite(x.batchPrecond) && x.batchPrecond > 0)) throw new Error(`editor extensions: batchPrecond (β) must be a number > 0, got ${x.batchPrecond}`);
  if (x.batchPrecond !== undefined && x.keyPrecond === undefined) throw new Error("editor extensions: batchPrecond (batch key decorrelation) needs keyPrecond (key preconditioning)");
  if (x.batchLoss !== undefined && x.batchLoss !== "sum") throw new Error(`editor extensions: batchLoss must be "sum" (absent = the official mean), got ${JSON.stringify(x.batchLoss)}`);
  if (x.rows !== undefined && x.rows !== "target") throw new Error(`editor extensions: rows must be "target" (absent = the official rows), got ${JSON.stringify(x.rows)}`);
}

/** The extension hooks of an editor, or undefined for an official editor. */
export function extensionsOf(e: Editor): ExtensionHooks | undefined {
  const h = e.hooks as ExtensionHooks | undefined;
  return h && "extensions" in h ? h : undefined;
}

/**
 * Give `editor` the hooks of `x` (replacing any it had). With keyPrecond, `precond` is P per edited
 * weight [d_in, d_in] (the hooks take ownership; measure it with `keyPreconditioners`). Returns the editor.
 */
export function extendEditor(editor: Editor, x: EditorExtensions, precond?: Record<string, tf.Tensor2D>): Editor {
  validateExtensions(x);
  if ((x.keyPrecond !== undefined) !== (precond !== undefined)) throw new Error(x.keyPrecond !== undefined ? "extendEditor: keyPrecond needs its preconditioners P" : "extendEditor: preconditioners given without keyPrecond");
  for (const n of editor.config.innerParams) {
    const p = precond?.[n];
    if (precond && !p) throw new Error(`extendEditor: no preconditioner for "${n}"`);
    const d = netFor(editor, n).net.dIn;
    if (p && (p.shape[0] !== d || p.shape[1] !== d)) throw new Error(`extendEditor: the preconditioner of "${n}" must be [${d}, ${d}], got [${p.shape}]`);
  }
  const previous = extensionsOf(editor);
  if (previous?.precond && previous.precond !== precond) tf.dispose(Object.values(previous.precond));
  const keys: KeyTransform | undefined = x.keyPrecond !== undefined ? preconditionedKeys({ precond, batchBeta: x.batchPrecond }) : undefined;
  const hooks: ExtensionHooks = {
    extensions: { ...x },
    ...(precond ? { precond } : {}),
    ...(x.rows === "target" ? { rows: targetRows } : {}),
    ...(x.batchLoss === "sum" ? { lossGroups: (n: number) => Array.from({ length: n }, (_, i) => i) } : {}),
    ...(keys ? { keys } : {}),
    save: () => ({ config: { ...x }, tensors: Object.fromEntries(Object.entries(precond ?? {}).map(([n, p]) => [`precond.${n}`, p])) }),
    dispose: () => precond && tf.dispose(Object.values(precond)),
  };
  editor.hooks = Object.keys(x).length ? hooks : undefined; // no extensions: the official editor again
  return editor;
}

/**
 * A view of `editor` (the same variables, statistics and P) whose keys hook is `keys`. It owns
 * nothing: never pass it to `disposeEditor` (that would free the original's variables).
 */
export function withKeys(editor: Editor, keys: KeyTransform): Editor {
  const { dispose: _owned, ...rest } = editor.hooks ?? {};
  return { ...editor, hooks: { ...rest, keys } };
}

/** Rebuilds the hooks of a folder's `extensions` (mend/editorFolder.ts `AttachHooks`). */
export const attachExtensions: AttachHooks = (editor, saved, tensors) => {
  const x = saved as EditorExtensions;
  validateExtensions(x);
  const names = editor.config.innerParams;
  const precond = x.keyPrecond !== undefined ? Object.fromEntries(names.map((n) => [n, tensors[`precond.${n}`] as tf.Tensor2D])) : undefined;
  const unknown = Object.keys(tensors).filter((k) => !(precond && k.startsWith("precond.") && names.includes(k.slice(8))));
  if (precond && names.some((n) => !precond[n])) throw new Error(`editor folder: keyPrecond without a preconditioner for ${names.filter((n) => !precond[n]).join(", ")}`);
  if (unknown.length) throw new Error(`editor folder: unexpected tensor(s) ${unknown.join(", ")}`);
  extendEditor(editor, x, precond);
};

/** Load any editor folder, official or with extensions. The caller owns the editor (`disposeEditor`). */
export function loadEditor(dir: string, baseConfig: GPT2Config, baseParams: Readonly<Params>, opts: { allowBaseMismatch?: boolean } = {}): Editor {
  return loadOfficialEditor(dir, baseConfig, baseParams, attachExtensions, opts);
}
