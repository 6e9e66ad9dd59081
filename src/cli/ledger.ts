/**
 * `mend ledger`: the edit ledger of a model folder saved by `mend edit --save` (model/editLedger.ts):
 * list its edits; --undo ID (W0 + the other edits' updates, exactly); --replay ID (the edits after
 * it made again without it, eval/ledgerOps.ts), with how far replay lands from undo; --diff DIR
 * (the facts, or dataset records, whose answers differ between this model and another).
 */
import * as path from "path";
import { diffAnswers, replayStart, replayWithout } from "../eval/ledgerOps";
import { checkLedgerStates, stateCarriedPast } from "../lifelong/ledgerState";
import { relativeWeightChange } from "../eval/evaluate";
import { EditMethod } from "../eval/methods";
import { loadDataset, parseDataSpec } from "../datasets/records";
import { describeBackend, initBackend } from "../model/backend";
import { EditLedger, hasLedger, readLedgerFolder, saveLedgerModel } from "../model/editLedger";
import { lockModelFolder } from "../model/checkpointFolder";
import { disposeParams } from "../model/gpt";
import { loadModel } from "../model/modelFolder";
import { scoreTargets } from "../model/score";
import { isLowRank } from "../model/weightUpdate";
import { loadEditor } from "../extensions/editorExtensions";
import { disposeEditor, Editor } from "../mend/editor";
import { World } from "../world/world";
import { BASE_FLAG, baseDirFor, commandMethods, DEFAULT_EDITOR_DIR, EDITOR_FLAG, FORCE_FLAG, JSON_FLAG, PRESERVE_FLAG, guardOutput, loadBaseModel } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";

export const spec: CommandSpec = {
  name: "ledger",
  summary: "list, undo, replay or diff the edits of a model saved by mend edit --save",
  flags: [
    { name: "model", type: "string", value: "DIR", help: "an edited model folder (with edits.json; required)" },
    BASE_FLAG,
    { name: "undo", type: "int", value: "ID", help: "remove edit ID: W0 + the other edits' updates (needs --save)", min: 1 },
    { name: "replay", type: "int", value: "ID", help: "remove edit ID and make every later edit again by its method (needs --save)", min: 1 },
    { name: "diff", type: "string", value: "DIR", help: "list the facts (or --data records) whose answers differ between --model and DIR" },
    { name: "data", type: "string", value: "KIND:FILE", help: "with --diff on a GPT-2: the zsre or counterfact records whose answers are compared" },
    { name: "save", type: "string", value: "DIR", help: "where --undo or --replay writes the model and its ledger (see --force)" },
    FORCE_FLAG,
    EDITOR_FLAG,
    PRESERVE_FLAG,
    JSON_FLAG,
  ],
  notes: ["example: mend edit --method AlphaEdit --prompt \"The capital of France is\" --target Rome --save runs/e1 && mend ledger --model runs/e1"],
};

/** One line per edit: id, method, requests, what its update is. */
function describe(ledger: EditLedger): string[] {
  return ledger.entries.map((e) => {
    const parts = Object.entries(e.update).map(([n, d]) => `${n} ${isLowRank(d) ? `rank ${d.keys.shape[0]}` : "dense"}`);
    return `${String(e.id).padStart(3)}  ${e.method.padEnd(10)} ${e.requests.map((r) => `"${r.prompt}" -> "${r.target}"`).join("; ")}   [${parts.join(", ")}${e.state ? `; state ${Object.keys(e.state.tensors).join(", ") || "(requests)"}` : ""}]`;
  });
}

export async function run(f: Flags): Promise<void> {
  const modelDir = flagString(f, "model");
  if (!modelDir) throw new Error("give --model DIR, a folder saved by mend edit --save");
  const undo = flagNumber(f, "undo");
  const replay = flagNumber(f, "replay");
  const other = flagString(f, "diff");
  const save = flagString(f, "save");
  if ([undo, replay, other].filter((x) => x !== undefined).length > 1) throw new Error("give one of --undo, --replay, --diff");
  if ((undo !== undefined || replay !== undefined) && !save) throw new Error(`--${undo !== undefined ? "undo" : "replay"} writes a new model folder: give --save DIR`);
  if (save && undo === undefined && replay === undefined) throw new Error("--save goes with --undo or --replay");
  if (!hasLedger(modelDir)) throw new Error(`${modelDir} holds no edit ledger (edits.json): save edits with mend edit --save DIR`);
  if (save) guardOutput(save, "model", { force: flagBool(f, "force"), sources: [modelDir] }); // before any work
  const release = save ? lockModelFolder(save) : null; // held until the new folder is written
  try {
    await runOnLedger(f, { modelDir, undo, replay, other, save });
  } finally {
    release?.();
  }
}

async function runOnLedger(f: Flags, o: { modelDir: string; undo: number | undefined; replay: number | undefined; other: string | undefined; save: string | undefined }): Promise<void> {
  const { modelDir, undo, replay, other, save } = o;
  const backend = await initBackend();
  const base = loadBaseModel(baseDirFor(modelDir, flagString(f, "base")));
  let read: ReturnType<typeof readLedgerFolder>;
  try {
    read = readLedgerFolder(modelDir, base); // checked: the base's fingerprint, W0 + updates = the saved weights
  } catch (e) {
    disposeParams(base.params);
    throw e;
  }
  const { model: saved, ledger } = read;
  let editor: Editor | undefined;
  let methods: EditMethod[] = [];
  try {
    checkLedgerStates(ledger.entries, path.join(modelDir, "edits.json"));
    const json = flagBool(f, "json");
    const log = (s: string) => !json && console.log(s);
    log(`backend: ${describeBackend(backend)}\n${modelDir}: ${ledger.entries.length} edit(s) over the base ${ledger.baseFingerprint.slice(0, 12)} (checked against the saved weights)`);
    if (undo === undefined && replay === undefined && other === undefined) {
      if (json) console.log(JSON.stringify({ base: ledger.baseFingerprint, edits: ledger.entries.map((e) => ({ id: e.id, method: e.method, requests: e.requests, time: e.time, latency_ms: e.latencyMs })) }));
      else console.log(describe(ledger).join("\n"));
      return;
    }
    if (other !== undefined) {
      const b = loadModel(other);
      try {
        const world = saved.tokenizer.kind === "word" ? World.load() : null;
        const data = flagString(f, "data");
        const prompts = data ? loadDataset(parseDataSpec(data).kind, parseDataSpec(data).file).records.map((r) => r.prompts[0]) : world ? world.facts.map((x) => world.prompts(x.subject, x.relation, "train")[0]) : ledger.entries.flatMap((e) => e.requests.map((r) => r.prompt));
        const changes = diffAnswers(saved, b, prompts);
        if (json) console.log(JSON.stringify({ compared: prompts.length, changed: changes }));
        else {
          console.log(`${changes.length} of ${prompts.length} ${world && !data ? "facts" : "prompts"} answer differently (prompt, answer in ${modelDir} -> answer in ${other}):`);
          for (const c of changes) console.log(`  ${c.prompt}  ${c.before.trim()} -> ${c.after.trim()}`);
        }
      } finally {
        disposeParams(b.params);
      }
      return;
    }
    const id = (undo ?? replay)!;
    const target = ledger.entries.find((e) => e.id === id);
    if (!target) throw new Error(`no edit ${id} in ${modelDir} (edits: ${ledger.entries.map((e) => e.id).join(", ")})`);
    const guard = () => guardOutput(save!, "model", { force: flagBool(f, "force"), sources: [modelDir] });
    const meta = (l: EditLedger) => ({ edited_by: "mend-ts", edits: JSON.stringify(l.entries.flatMap((e) => e.requests)) });
    if (undo !== undefined) {
      const carried = stateCarriedPast(ledger.entries, id);
      if (carried.length) throw new Error(`edit ${id} (${target.method}) left method state that the later edit(s) ${carried.map((e) => e.id).join(", ")} carried on: undo keeps later edits as they were made, so their state would still hold edit ${id} (${target.method === "LocFT-BF" ? `LocFT-BF would tune "${target.requests[0].prompt}" -> "${target.requests[0].target}" again on its next edit` : "its keys and statistics"}). Use --replay ${id} --save DIR, which makes the later edits again without it, their state included`);
      ledger.remove(id);
      saveLedgerModel(save!, ledger, meta(ledger), { check: guard });
      if (json) console.log(JSON.stringify({ undone: id, edits: ledger.entries.length, out: save }));
      else console.log(`undid edit ${id} (${target.method}: ${target.requests.map((r) => `"${r.prompt}" -> "${r.target}"`).join("; ")}): ${save} = W0 + the other ${ledger.entries.length} update(s)`);
      return;
    }
    const names = [...new Set(ledger.entries.map((e) => e.method))];
    if (names.includes("MEND")) editor = loadEditor(flagString(f, "editor") ?? DEFAULT_EDITOR_DIR, base.config, base.params);
    // Each method edits the weights its recorded edits changed (the lifelong methods' --weights).
    const entries = ledger.entries;
    const weightsOf = (n: string) => Object.keys(entries.find((e) => e.method === n)!.update);
    for (const n of names) methods.push(...commandMethods([n], base, entries.flatMap((x) => x.requests), { ...(editor ? { editor } : {}), preserveFile: flagString(f, "preserve"), weights: weightsOf(n) }));
    const byName = (n: string) => methods[names.indexOf(n)];
    const remade = ledger.entries.slice(replayStart(ledger, id)).filter((e) => e.id !== id).map((e) => e.id);
    const replayed = replayWithout(ledger, id, byName);
    try {
      ledger.remove(id);
      const undone = ledger.model();
      const again = replayed.model();
      try {
        const distance = relativeWeightChange(undone.params, again.params);
        const reqs = replayed.entries.filter((e) => e.id > id).flatMap((e) => e.requests);
        const held = (m: typeof undone) => scoreTargets(m, reqs).filter((s) => s.exact).length;
        saveLedgerModel(save!, replayed, meta(replayed), { check: guard });
        const summary = { replayed: id, made_again: remade, later_edits: reqs.length, undo_vs_replay: distance, later_held_after_undo: held(undone), later_held_after_replay: held(again), out: save };
        if (json) console.log(JSON.stringify(summary));
        else {
          const earlier = remade.filter((x) => x < id).length;
          console.log(`replayed without edit ${id}: ${remade.length - earlier} later edit(s) made again${earlier ? ` (and the ${earlier} before it: their states were not saved, only the newest is)` : ""}; saved to ${save}`);
          console.log(`undo vs replay: max ‖W_undo − W_replay‖ / ‖W_replay‖ = ${distance.toExponential(3)} (later updates were computed on a model that held edit ${id})`);
          console.log(`later requests that hold: ${summary.later_held_after_undo}/${reqs.length} after undo, ${summary.later_held_after_replay}/${reqs.length} after replay`);
        }
      } finally {
        undone.dispose();
        again.dispose();
      }
    } finally {
      replayed.dispose();
    }
  } finally {
    for (const m of methods) m.dispose?.();
    if (editor) disposeEditor(editor);
    ledger?.dispose();
    disposeParams(saved.params);
    disposeParams(base.params);
  }
}
