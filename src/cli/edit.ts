/**
 * `mend edit`: edit a model (MEND by default, or another weight-editing method) and show the edit
 * prompt, paraphrases and locality probes before/after. With --save the edited model is written with
 * its edit ledger (model/editLedger.ts); editing a saved folder again appends to its ledger, checked
 * against its weights on load (`mend ledger` lists, undoes, replays and diffs).
 */
import { DEFAULT_CALIBRATION, calibration, calibrationOf, StepCalibration } from "../extensions/calibrate";
import { describeBackend, initBackend } from "../model/backend";
import { disposeParams } from "../model/gpt";
import { modelMetadata } from "../model/modelFolder";
import { parseJson } from "../model/jsonFile";
import { EditLedger, hasLedger, readLedgerFolder, saveLedgerModel } from "../model/editLedger";
import { checkLedgerStates } from "../lifelong/ledgerState";
import { lockModelFolder, resolveLinks } from "../model/checkpointFolder";
import type { EditRequest } from "../datasets/editRecord";
import { loadModel, Model } from "../model/modelFolder";
import type { ParamsModel } from "../model/paramsModel";
import { mendEdit } from "../mend/edit";
import { disposeEditor, Editor } from "../mend/editor";
import { loadEditor } from "../extensions/editorExtensions";
import { disposeMethodEdit, EditMethod } from "../eval/methods";
import { formatProbeTable, probesFor, runProbes } from "../eval/report";
import type { MethodEdit } from "../eval/methods";
import type { EditInfo } from "../mend/edit";
import { applyUpdates } from "../model/paramsModel";
import * as path from "path";
import { World } from "../world/world";
import { ALLOW_BASE_MISMATCH_FLAG, BASE_FLAG, baseDirFor, commandMethods, DEFAULT_EDITOR_DIR, DEFAULT_MODEL_DIR, EDIT_METHODS, EDITOR_FLAG, FORCE_FLAG, JSON_FLAG, MODEL_FLAG, PRESERVE_FLAG, guardOutput, loadBaseModel, readRequests, WEIGHTS_FLAG } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";

export const spec: CommandSpec = {
  name: "edit",
  summary: "edit the model with MEND and show the edit, its paraphrases and locality probes before and after",
  flags: [
    { name: "prompt", type: "string", value: "TEXT", help: "the edit prompt" },
    { name: "target", type: "string", value: "TEXT", help: "the new answer" },
    { name: "requests", type: "string", value: "FILE.json", help: 'several edits in one call: [{"prompt": ..., "target": ...}, ...]' },
    { name: "paraphrase", type: "repeat", value: "TEXT", help: "a paraphrase of the edit prompt, judged on the new target (repeatable)" },
    { name: "probe", type: "repeat", value: "TEXT", help: "an extra prompt to show before/after, e.g. a neighbour that should not change (repeatable)" },
    { name: "method", type: "string", value: "M", help: "the editing method (UltraEdit, AlphaEdit, LocFT-BF need no trained editor)", choices: EDIT_METHODS, default: "MEND" },
    MODEL_FLAG,
    EDITOR_FLAG,
    { name: "save", type: "string", value: "DIR", help: "write the edited model and its edit ledger to this new folder (see --force)" },
    BASE_FLAG,
    PRESERVE_FLAG,
    WEIGHTS_FLAG,
    FORCE_FLAG,
    JSON_FLAG,
    { name: "calibrate", type: "number", value: "MARGIN", help: "step calibration: MARGIN x the smallest step that makes the edit right (our extension)", above: 0, advanced: true },
    { name: "lr-scale", type: "number", value: "S", help: "multiply every edit lr α (ROME/EasyEdit's lr_scale)", default: 1, above: 0, advanced: true },
    ALLOW_BASE_MISMATCH_FLAG,
  ],
  notes: [
    'example: mend edit --prompt "The president of the United States is" --target Biden',
    "For a GPT-2 (--model DIR) the target is the text after the prompt; a space is added between them unless one side has it.",
    "Editing a folder saved by mend edit appends to its edit ledger (its base model: --base).",
    "MEND_BACKEND=node-gpu|node|wasm|cpu forces a backend.",
  ],
};

/** The edit requests an edited model folder already holds (its model.safetensors metadata), oldest first. */
function priorEdits(modelDir: string): { prompt: string; target: string }[] {
  const raw = modelMetadata(modelDir).edits;
  if (!raw) return [];
  const list = parseJson(raw, `${modelDir}/model.safetensors (metadata "edits")`);
  return Array.isArray(list) ? (list as { prompt: string; target: string }[]) : [];
}

/** The model to edit: a plain model folder (its own W0), or an edited one with its ledger over --base. */
function loadEditable(modelDir: string, baseDir: string): { base: Model; model: Model | ParamsModel; ledger: EditLedger; free: () => void } {
  if (!hasLedger(modelDir)) {
    const model = loadModel(modelDir);
    return { base: model, model, ledger: EditLedger.start(model, resolveLinks(modelDir)), free: () => disposeParams(model.params) };
  }
  const base = loadBaseModel(baseDir);
  let ledger: EditLedger | undefined;
  try {
    const read = readLedgerFolder(modelDir, base); // the saved weights checked against W0 + the ledger's updates
    ledger = read.ledger;
    disposeParams(read.model.params);
    checkLedgerStates(ledger.entries, path.join(modelDir, "edits.json"));
    const kept = ledger;
    const current = kept.model();
    return { base, model: current, ledger: kept, free: () => (current.dispose(), kept.dispose(), disposeParams(base.params)) };
  } catch (e) {
    ledger?.dispose();
    disposeParams(base.params);
    throw e;
  }
}

export async function run(f: Flags): Promise<void> {
  const file = flagString(f, "requests");
  if (file && (flagString(f, "prompt") || flagString(f, "target"))) throw new Error("give either --requests FILE.json or --prompt and --target, not both");
  if (!file && (!flagString(f, "prompt") || !flagString(f, "target"))) throw new Error("give --prompt TEXT and --target TEXT, or --requests FILE.json");
  const requests = file ? readRequests(file) : [{ prompt: flagString(f, "prompt")!, target: flagString(f, "target")! }];
  const method = flagString(f, "method") ?? "MEND";
  const margin = flagNumber(f, "calibrate");
  if (method !== "MEND" && (margin !== undefined || f["lr-scale"] !== undefined)) throw new Error(`--calibrate and --lr-scale are MEND's; not for --method ${method}`);
  const cal = margin !== undefined ? { ...DEFAULT_CALIBRATION, margin } : null;
  const modelDir = flagString(f, "model") ?? DEFAULT_MODEL_DIR;
  const editorDir = flagString(f, "editor") ?? DEFAULT_EDITOR_DIR;
  const save = flagString(f, "save");
  if (save) guardOutput(save, "model", { force: flagBool(f, "force"), sources: [modelDir, editorDir] }); // before any work
  if (save && resolveLinks(save) === resolveLinks(modelDir) && !hasLedger(modelDir)) {
    // the folder's weights are the base (W0) its new ledger is recorded over: overwriting them would orphan it
    throw new Error(`--save ${save} is --model itself, a model with no edit ledger: its weights are the base model (W0) the edit is recorded over, and saving onto them would lose that base. Save to another folder (--save DIR); that folder can then be edited in place (its ledger records ${modelDir} as its base)`);
  }
  // The folder saved to is held from before its ledger is read until it is written: two appends at once would lose one
  const release = save ? lockModelFolder(save) : null;
  try {
    await editAndSave(f, { requests, method, cal, modelDir, editorDir, save });
  } finally {
    release?.();
  }
}

async function editAndSave(f: Flags, o: { requests: EditRequest[]; method: string; cal: StepCalibration | null; modelDir: string; editorDir: string; save: string | undefined }): Promise<void> {
  const { requests, method, cal, modelDir, editorDir, save } = o;
  const backend = await initBackend();
  const { base, model, ledger, free } = loadEditable(modelDir, baseDirFor(modelDir, flagString(f, "base")));
  let editor: Editor | undefined;
  let methods: EditMethod[] = [];
  try {
    if (method === "MEND") {
      try {
        editor = loadEditor(editorDir, base.config, base.params, { allowBaseMismatch: flagBool(f, "allow-base-mismatch") });
      } catch (e) {
        const own = path.resolve(modelDir) !== path.resolve(DEFAULT_MODEL_DIR) && path.resolve(editorDir) === path.resolve(DEFAULT_EDITOR_DIR) && base.tokenizer.kind !== "word";
        throw own ? new Error(`${(e as Error).message}. The shipped editor is for the facts-world model: train one for ${modelDir} with "mend train-editor --model ${modelDir} --data zsre:FILE" and pass it with --editor DIR, or edit with --method UltraEdit, AlphaEdit or LocFT-BF, which need none`) : e;
      }
    }
    // The facts world's paraphrases and locality probes only mean something to a model of that world.
    const world = model.tokenizer.kind === "word" ? World.load() : null;
    const paraphrases = ((f.paraphrase as string[] | undefined) ?? []).map((prompt) => ({ prompt, kind: "paraphrase" as const, expected: requests[0].target }));
    if (paraphrases.length && requests.length > 1) throw new Error("--paraphrase applies to a single edit (--prompt/--target), not to --requests");
    const probes = probesFor(world, requests, (f.probe as string[] | undefined) ?? [], 3, paraphrases);
    let info: EditInfo | undefined;
    let e: MethodEdit;
    if (editor) {
      const r = mendEdit(model, editor, requests, { lrScale: flagNumber(f, "lr-scale") ?? 1, stepScale: cal ? calibration(cal) : null });
      info = r.info;
      e = { model: applyUpdates(model, [r.update]), update: r.update, latencyMs: r.info.latencyMs };
    } else {
      const last = ledger.entries[ledger.entries.length - 1];
      if (last?.stateOmitted && last.method === method) console.error(`note: the state ${method} kept after edit ${last.id} was not saved in ${modelDir} (an undo removed the newest edit); this edit starts ${method}'s state afresh`);
      const prior = [...ledger.entries].reverse().find((x) => x.method === method && (x.state || x.stateOmitted));
      if (prior && last && prior !== last && last.method !== method) {
        console.error(`note: ${method}'s state after edit ${prior.id} is not carried into this edit: edit ${last.id} (${last.method}) came after it, and an edited model carries its newest edit's state only; ${method} starts its state afresh, so what it kept for the edits up to ${prior.id} does not constrain this one`);
      }
      methods = commandMethods([method], base, [...ledger.entries.flatMap((x) => x.requests), ...requests], { preserveFile: flagString(f, "preserve"), ...(f.weights ? { weights: f.weights as string[] } : {}) });
      const stateWeights = methods[0].stateWeights;
      if (last?.method === method && last.state && stateWeights) {
        // A key-value method keeps its statistics per edited weight: carrying them to other weights would apply one layer's keys to another's.
        const had = Object.keys(last.update);
        if (had.length !== stateWeights.length || had.some((w) => !stateWeights.includes(w))) {
          throw new Error(`edit ${last.id}'s ${method} state belongs to the weights it edited (${had.join(", ")}), and this edit names ${stateWeights.join(", ")}${f.weights ? " (--weights)" : " (the default)"}: ${method} carries that state into edits of the same weights only. Edit them (--weights ${had.join(",")}), or undo edit ${last.id} first (mend ledger --undo ${last.id} --save DIR) and edit that folder with the weights you want`);
        }
      }
      e = methods[0].edit(model, requests);
    }
    try {
      const rows = runProbes(model, e.model, probes);
      const entry = ledger.add({ method, requests, update: e.update!, ...(e.state ? { state: e.state } : {}), latencyMs: e.latencyMs });
      e = { ...e, update: undefined, state: undefined }; // the ledger owns them now
      // Checked again under the folder's lock: a concurrent --save to the same folder cannot both succeed.
      if (save) saveLedgerModel(save, ledger, { edited_by: "mend-ts", edits: JSON.stringify([...priorEdits(modelDir), ...requests]) }, { check: () => guardOutput(save, "model", { force: flagBool(f, "force"), sources: [modelDir, editorDir] }) });
      const c = info ? calibrationOf(info) : null;
      if (flagBool(f, "json")) {
        console.log(
          JSON.stringify({
            requests,
            method,
            edit_id: entry.id,
            results: rows.map((r) => ({ prompt: r.prompt, kind: r.kind, expected: r.expected, group: r.group, before: r.before, after: r.after, ...(r.right ? { right: r.right } : {}) })),
            latency_ms: e.latencyMs,
            ...(info ? { layers: info.layers } : {}),
            ...(c ? { calibration: { scales: c.scales, thresholds: c.thresholds, found: c.found } } : {}),
            backend: backend.kind,
          }),
        );
      } else {
        console.log(`backend: ${describeBackend(backend)}`);
        const steps = c?.scales.map((x, b) => (c.found[b] ? `${x.toFixed(2)}` : `1 (none right up to ${cal!.maxScale})`)).join(", ");
        const step = c ? `, calibrated step ${steps} x alpha (margin ${cal!.margin})` : "";
        console.log(`edit ${entry.id} (${method}): ${requests.map((r) => `"${r.prompt}" -> "${r.target}"`).join("; ")}   (${e.latencyMs.toFixed(1)} ms${step})\n`);
        console.log(formatProbeTable(rows));
        if (save) console.log(`\nedited model saved to ${save} with its edit ledger (${ledger.entries.length} edit${ledger.entries.length > 1 ? "s" : ""}; mend ledger --model ${save})`);
      }
    } finally {
      disposeMethodEdit(e);
    }
  } finally {
    for (const m of methods) m.dispose?.();
    if (editor) disposeEditor(editor);
    free();
  }
}
