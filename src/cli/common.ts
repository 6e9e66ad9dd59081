/** What the `mend` commands share: the shipped folders, loading a model with its editor, request files. */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { loadEditor } from "../extensions/editorExtensions";
import { disposeParams } from "../model/gpt";
import { loadModel, Model } from "../model/modelFolder";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { Editor } from "../mend/editor";
import type { FlagSpec } from "./flags";
import { childEnv } from "./parentWatch";
import { readManifest, resolveLinks } from "../model/checkpointFolder";
import { readJsonFile } from "../model/jsonFile";
import { hasLedger, recordedBasePath } from "../model/editLedger";
import { worldMethodContext } from "../eval/evaluate";
import { buildMethods, EditMethod } from "../eval/methods";
import { lastBlocksMlp } from "../mend/editor";
import { World } from "../world/world";

export const PACKAGE_ROOT = path.join(__dirname, "..", "..");
export const DEFAULT_MODEL_DIR = path.join(PACKAGE_ROOT, "checkpoints", "base");
export const DEFAULT_EDITOR_DIR = path.join(PACKAGE_ROOT, "checkpoints", "editor");
/** The editor trained for batched edits (the batch-editor recipe, README). */
export const DEFAULT_KE_DIR = path.join(PACKAGE_ROOT, "checkpoints", "ke");
export const DEFAULT_ENN_DIR = path.join(PACKAGE_ROOT, "checkpoints", "enn");
export const DEFAULT_BATCH_EDITOR_DIR = path.join(PACKAGE_ROOT, "checkpoints", "editor-batch");

/** The base model and an editor for it (official or with extensions). The caller disposes both. */
export function loadModelAndEditor(modelDir = DEFAULT_MODEL_DIR, editorDir = DEFAULT_EDITOR_DIR, opts: { allowBaseMismatch?: boolean } = {}): { model: Model; editor: Editor } {
  const model = loadModel(modelDir);
  try {
    return { model, editor: loadEditor(editorDir, model.config, model.params, opts) };
  } catch (e) {
    disposeParams(model.params);
    const own = path.resolve(modelDir) !== path.resolve(DEFAULT_MODEL_DIR) && path.resolve(editorDir) === path.resolve(DEFAULT_EDITOR_DIR);
    if (own) throw new Error(`${(e as Error).message}. The shipped editor is for the facts-world model: train one for ${modelDir} with "mend train-editor --model ${modelDir} --data zsre:FILE" and pass it with --editor DIR`);
    throw e;
  }
}

/** A JSON list of {"prompt": ..., "target": ...}, each field checked to be text. */
export function readRequests(file: string): EditRequest[] {
  if (!fs.existsSync(file)) throw new Error(`requests file "${file}" not found`);
  const data = readJsonFile(file);
  if (!Array.isArray(data)) throw new Error(`${file}: expected a JSON list of {"prompt": ..., "target": ...}`);
  validateRequests(data as EditRequest[], `${file}: request`);
  const reqs = (data as EditRequest[]).map((d) => ({ prompt: d.prompt, target: d.target }));
  return reqs;
}

/** Flags several commands share (one declaration each). */
export const MODEL_FLAG: FlagSpec = { name: "model", type: "string", value: "DIR", help: "model folder", default: "checkpoints/base" };
export const EDITOR_FLAG: FlagSpec = { name: "editor", type: "string", value: "DIR", help: "editor folder (official or with extensions)", default: "checkpoints/editor" };
export const JSON_FLAG: FlagSpec = { name: "json", type: "boolean", help: "one JSON object instead of text" };
export const SEED_FLAG: FlagSpec = { name: "seed", type: "int", value: "S", help: "seed of the initialisation and the data order", default: 0, min: 0 };
export const RESUME_FLAG: FlagSpec = { name: "resume", type: "boolean", help: "continue the run in --run-dir from its last checkpoint" };

export const FORCE_FLAG: FlagSpec = { name: "force", type: "boolean", help: "replace a folder that holds something (a shipped checkpoint, the source folder, another kind of folder, a non-empty folder)" };

/** A new run folder under runs/: runs/<command>-<UTC date>-<time>, never an existing one. */
export function newRunDir(command: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "").replace("T", "-");
  for (let i = 0; ; i++) {
    const dir = path.join(PACKAGE_ROOT, "runs", `${command}-${stamp}${i ? `-${i}` : ""}`);
    if (!fs.existsSync(dir)) return dir;
  }
}

const a = (kind: string) => `${/^[aeiou]/.test(kind) ? "an" : "a"} ${kind}`;

const inside = (child: string, parent: string) => {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
};

/**
 * Refuse to write a `kind` folder to `dir` where that would replace something the user did not
 * name for replacement: the shipped checkpoints, a folder the command reads (`sources`), a folder
 * of another kind, or any non-empty folder. `force` allows it. The error says why.
 */
export function guardOutput(dir: string, kind: string, opts: { force?: boolean; sources?: readonly string[]; replaceSameKind?: boolean } = {}): void {
  const abs = resolveLinks(dir); // a link is judged by the folder it points to
  if (inside(process.cwd(), abs)) throw new Error(`refusing to write the ${kind} to ${dir}: it is the folder you are in, or one that holds it; choose another folder`);
  const reasons: string[] = [];
  if (inside(abs, resolveLinks(path.join(PACKAGE_ROOT, "checkpoints")))) reasons.push("it is one of the shipped checkpoints (regenerating them is described in README)");
  for (const s of opts.sources ?? []) if (resolveLinks(s) === abs) reasons.push("it is a folder this command reads from");
  if (fs.existsSync(abs)) {
    if (!fs.statSync(abs).isDirectory()) reasons.push("it is a file, not a folder");
    else if (fs.readdirSync(abs).length) {
      let m: ReturnType<typeof readManifest> = null;
      try {
        m = readManifest(abs);
      } catch (e) {
        reasons.push(`it is a folder whose manifest cannot be read (${(e as Error).message})`); // --force replaces it all the same
      }
      if (!(m?.kind === kind && opts.replaceSameKind)) reasons.push(m ? (m.kind === kind ? `it already holds ${a(kind)}` : `it holds ${a(m.kind)}, not ${a(kind)}`) : "it is a non-empty folder");
    }
  }
  if (reasons.length && !opts.force) throw new Error(`refusing to write the ${kind} to ${dir}: ${[...new Set(reasons)].join("; ")}. Pass --force to replace it, or choose another folder`);
}
export const ALLOW_BASE_MISMATCH_FLAG: FlagSpec = { name: "allow-base-mismatch", type: "boolean", help: "use an editor trained for another base model (its fingerprint differs)", advanced: true };

/**
 * Run `mend <args>` in a child process (the wasm backend is single-threaded: parallel work runs in
 * processes) and parse the last line of its standard output as JSON; its standard error passes
 * through. An error names `what` and the exit code.
 */
export function runMendChild(args: readonly string[], what: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, "bin", "mend.js"), ...args], { stdio: ["ignore", "pipe", "inherit"], env: childEnv() });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`${what} failed (exit ${code})`));
      try {
        resolve(JSON.parse(out.trim().split("\n").pop() ?? ""));
      } catch {
        reject(new Error(`${what} printed no JSON result`));
      }
    });
  });
}

/** The methods `mend edit` and `mend ledger` edit with (weight edits, no trained editor but MEND's). */
export const EDIT_METHODS = ["MEND", "FT", "FT+KL", "UltraEdit", "AlphaEdit", "LocFT-BF"] as const;

/**
 * The methods named, for editing `base` (W0) and the models edited from it: the facts world gives
 * FT+KL's locality texts and AlphaEdit's preserved facts; for another model they come from
 * `preserveFile` (a requests file). Nothing about the facts of `edits` (the requests to be made) is
 * preserved: keeping a fact's old answer would fight its edit. The caller disposes the methods (and
 * the editor it passed).
 */
export function commandMethods(names: readonly string[], base: Model, edits: readonly EditRequest[], opts: { editor?: Editor; preserveFile?: string; weights?: readonly string[] } = {}): EditMethod[] {
  const bad = names.filter((n) => !(EDIT_METHODS as readonly string[]).includes(n));
  if (bad.length) throw new Error(`unknown edit method ${bad.join(", ")}; choose from ${EDIT_METHODS.join(", ")}`);
  const w = base.tokenizer.kind === "word" ? World.load() : null;
  const world = w ? worldMethodContext(w, base) : null;
  const edited = new Set(edits.map((r) => r.prompt.trim()));
  if (w) {
    for (const r of edits) {
      const m = w.matchPrompt(r.prompt);
      if (m) for (const g of ["train", "heldout"] as const) for (const p of w.prompts(m.fact.subject, m.fact.relation, g)) edited.add(p);
    }
  }
  const keep = (xs: readonly EditRequest[] | undefined) => xs?.filter((x) => !edited.has(x.prompt.trim()));
  const extra = keep(opts.preserveFile ? readRequests(opts.preserveFile) : undefined);
  const lifelong = { model: base, ...(opts.weights ? { weights: opts.weights } : {}), preserve: extra ?? keep(world?.lifelong?.preserve) };
  if (!lifelong.preserve && names.some((n) => n === "AlphaEdit" || n === "FT+KL")) throw new Error(`${names.filter((n) => n === "AlphaEdit" || n === "FT+KL").join(" and ")} on a model outside the facts world need prompts to preserve: --preserve FILE.json ([{"prompt": ..., "target": ...}, ...], answers the model gives now)`);
  return buildMethods(names, {
    ...(opts.editor ? { editor: opts.editor } : {}),
    innerParams: opts.editor?.config.innerParams ?? lastBlocksMlp(base.config.n_layer),
    ...(lifelong.preserve ? { locTexts: (extra ?? world?.locTexts ?? []).slice(0, 16) } : {}),
    lifelong,
  });
}
export const BASE_FLAG: FlagSpec = { name: "base", type: "string", value: "DIR", help: "the base model W0 an edited folder's ledger was made on", default: "the folder its ledger recorded, else checkpoints/base" };

/**
 * The base model folder (W0) of the edited model folder `modelDir`: --base when given, else the
 * folder its ledger recorded when it started (if that is still there), else the shipped base.
 */
export function baseDirFor(modelDir: string, flag: string | undefined): string {
  if (flag) return flag;
  const recorded = hasLedger(modelDir) ? recordedBasePath(modelDir) : undefined;
  if (recorded && !fs.existsSync(recorded)) throw new Error(`${modelDir}: its edits were made to the base model in ${recorded}, which is gone: pass that base model with --base DIR`);
  return recorded ?? DEFAULT_MODEL_DIR;
}
export const WEIGHTS_FLAG: FlagSpec = { name: "weights", type: "strings", value: "NAME,...", help: "the weights UltraEdit, AlphaEdit and LocFT-BF edit, each edit spread over them (default: AlphaEdit the last four blocks' mlp.c_proj.weight, the others the last block's); GRACE: the one layer it adapts (default the mlp.c_fc.weight of the block at 35/48 of the depth, as its official GPT2-XL setting)" };
export const PRESERVE_FLAG: FlagSpec = { name: "preserve", type: "string", value: "FILE.json", help: "prompts with their current answers that AlphaEdit keeps and FT+KL's KL term reads (default on the facts world: its training-split facts)" };

/** The base model an edit ledger was made over (`--base DIR`); a failure to load it names the flag. */
export function loadBaseModel(dir: string): Model {
  try {
    return loadModel(dir);
  } catch (e) {
    throw new Error(`--base ${dir} (the base model the edits were made to): ${(e as Error).message.replace(/; run "mend pretrain" or pass --model$/, "")}`);
  }
}
