/** What the `mend` commands share: the shipped folders, loading a model with its editor, request files. */
import * as fs from "fs";
import * as path from "path";
import { loadEditor } from "../extensions/editorExtensions";
import { disposeParams } from "../model/gpt";
import { loadModel, Model } from "../model/modelFolder";
import { EditRequest, validateRequests } from "../mend/edit";
import { Editor } from "../mend/editor";
import type { FlagSpec } from "./flags";

export const PACKAGE_ROOT = path.join(__dirname, "..", "..");
export const DEFAULT_MODEL_DIR = path.join(PACKAGE_ROOT, "checkpoints", "base");
export const DEFAULT_EDITOR_DIR = path.join(PACKAGE_ROOT, "checkpoints", "editor");
/** The editor trained for batched edits (the batch-editor recipe, README). */
export const DEFAULT_BATCH_EDITOR_DIR = path.join(PACKAGE_ROOT, "checkpoints", "editor-batch");

/** The base model and an editor for it (official or with extensions). The caller disposes both. */
export function loadModelAndEditor(modelDir = DEFAULT_MODEL_DIR, editorDir = DEFAULT_EDITOR_DIR): { model: Model; editor: Editor } {
  const model = loadModel(modelDir);
  try {
    return { model, editor: loadEditor(editorDir, model.config, model.params) };
  } catch (e) {
    disposeParams(model.params);
    throw e;
  }
}

/** A JSON list of {"prompt": ..., "target": ...}. */
export function readRequests(file: string): EditRequest[] {
  if (!fs.existsSync(file)) throw new Error(`requests file "${file}" not found`);
  let data: unknown;
  try {
    data = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(data)) throw new Error(`${file}: expected a JSON list of {"prompt": ..., "target": ...}`);
  const reqs = data.map((d) => ({ prompt: String(d?.prompt ?? ""), target: String(d?.target ?? "") }));
  validateRequests(reqs);
  return reqs;
}

/** Flags several commands share (one declaration each). */
export const MODEL_FLAG: FlagSpec = { name: "model", type: "string", value: "DIR", help: "model folder", default: "checkpoints/base" };
export const EDITOR_FLAG: FlagSpec = { name: "editor", type: "string", value: "DIR", help: "editor folder (official or with extensions)", default: "checkpoints/editor" };
export const JSON_FLAG: FlagSpec = { name: "json", type: "boolean", help: "one JSON object instead of text" };
export const SEED_FLAG: FlagSpec = { name: "seed", type: "int", value: "S", help: "seed of the initialisation and the data order", default: 0, min: 0 };
export const RESUME_FLAG: FlagSpec = { name: "resume", type: "boolean", help: "continue the run in --run-dir from its last checkpoint" };
