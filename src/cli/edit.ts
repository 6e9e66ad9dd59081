/** `mend edit`: apply a MEND edit and show the edit prompt, paraphrases and locality probes before/after. */
import { DEFAULT_CALIBRATION, calibration, calibrationOf } from "../extensions/calibrate";
import { describeBackend, initBackend } from "../model/backend";
import { disposeParams } from "../model/gpt";
import { modelMetadata, saveModel } from "../model/modelFolder";
import { parseJson } from "../model/jsonFile";
import { applyUpdates } from "../model/paramsModel";
import { disposeEdit, mendEdit } from "../mend/edit";
import { disposeEditor } from "../mend/editor";
import { formatProbeTable, probesFor, runProbes } from "../eval/report";
import { World } from "../world/world";
import { ALLOW_BASE_MISMATCH_FLAG, DEFAULT_EDITOR_DIR, DEFAULT_MODEL_DIR, EDITOR_FLAG, FORCE_FLAG, JSON_FLAG, MODEL_FLAG, guardOutput, loadModelAndEditor, readRequests } from "./common";
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
    MODEL_FLAG,
    EDITOR_FLAG,
    { name: "save", type: "string", value: "DIR", help: "write the edited model to this new folder (see --force)" },
    FORCE_FLAG,
    JSON_FLAG,
    { name: "calibrate", type: "number", value: "MARGIN", help: "step calibration: MARGIN x the smallest step that makes the edit right (our extension)", above: 0, advanced: true },
    { name: "lr-scale", type: "number", value: "S", help: "multiply every edit lr α (ROME/EasyEdit's lr_scale)", default: 1, above: 0, advanced: true },
    ALLOW_BASE_MISMATCH_FLAG,
  ],
  notes: [
    'example: mend edit --prompt "The president of the United States is" --target Biden',
    "For a GPT-2 (--model DIR) the target is the text after the prompt; a space is added between them unless one side has it.",
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

export async function run(f: Flags): Promise<void> {
  const file = flagString(f, "requests");
  if (file && (flagString(f, "prompt") || flagString(f, "target"))) throw new Error("give either --requests FILE.json or --prompt and --target, not both");
  if (!file && (!flagString(f, "prompt") || !flagString(f, "target"))) throw new Error("give --prompt TEXT and --target TEXT, or --requests FILE.json");
  const requests = file ? readRequests(file) : [{ prompt: flagString(f, "prompt")!, target: flagString(f, "target")! }];
  const margin = flagNumber(f, "calibrate");
  const cal = margin !== undefined ? { ...DEFAULT_CALIBRATION, margin } : null;
  const modelDir = flagString(f, "model") ?? DEFAULT_MODEL_DIR;
  const editorDir = flagString(f, "editor") ?? DEFAULT_EDITOR_DIR;
  const save = flagString(f, "save");
  if (save) guardOutput(save, "model", { force: flagBool(f, "force"), sources: [modelDir, editorDir] }); // before any work
  const backend = await initBackend();
  const { model, editor } = loadModelAndEditor(modelDir, editorDir, { allowBaseMismatch: flagBool(f, "allow-base-mismatch") });
  try {
    // The facts world's paraphrases and locality probes only mean something to a model of that world.
    const world = model.tokenizer.kind === "word" ? World.load() : null;
    const paraphrases = ((f.paraphrase as string[] | undefined) ?? []).map((prompt) => ({ prompt, kind: "paraphrase" as const, expected: requests[0].target }));
    if (paraphrases.length && requests.length > 1) throw new Error("--paraphrase applies to a single edit (--prompt/--target), not to --requests");
    const probes = probesFor(world, requests, (f.probe as string[] | undefined) ?? [], 3, paraphrases);
    const result = mendEdit(model, editor, requests, { lrScale: flagNumber(f, "lr-scale") ?? 1, stepScale: cal ? calibration(cal) : null });
    const edited = applyUpdates(model, [result.update]);
    const rows = runProbes(model, edited, probes);
    // Checked again under the folder's lock: a concurrent --save to the same folder cannot both succeed.
    if (save) saveModel(save, edited, { edited_by: "mend-ts", edits: JSON.stringify([...priorEdits(modelDir), ...requests]) }, { check: () => guardOutput(save, "model", { force: flagBool(f, "force"), sources: [modelDir, editorDir] }) });
    const c = calibrationOf(result.info);
    if (flagBool(f, "json")) {
      console.log(
        JSON.stringify({
          requests,
          results: rows.map((r) => ({ prompt: r.prompt, kind: r.kind, expected: r.expected, group: r.group, before: r.before, after: r.after, ...(r.right ? { right: r.right } : {}) })),
          latency_ms: result.info.latencyMs,
          layers: result.info.layers,
          ...(c ? { calibration: { scales: c.scales, thresholds: c.thresholds, found: c.found } } : {}),
          backend: backend.kind,
        }),
      );
    } else {
      console.log(`backend: ${describeBackend(backend)}`);
      const steps = c?.scales.map((x, b) => (c.found[b] ? `${x.toFixed(2)}` : `1 (none right up to ${cal!.maxScale})`)).join(", ");
      const step = c ? `, calibrated step ${steps} x alpha (margin ${cal!.margin})` : "";
      console.log(`edit: ${requests.map((r) => `"${r.prompt}" -> "${r.target}"`).join("; ")}   (${result.info.latencyMs.toFixed(1)} ms${step})\n`);
      console.log(formatProbeTable(rows));
      if (save) console.log(`\nedited model saved to ${save}`);
    }
    edited.dispose();
    disposeEdit(result);
  } finally {
    disposeEditor(editor);
    disposeParams(model.params);
  }
}
