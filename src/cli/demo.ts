/** `mend demo` (`npm start`): the President -> Biden edit with MEND, MEND-cal, FT and FT+KL, before/after, and a report. */
import * as path from "path";
import { firstWord, formatProbeTable, ProbeResult, probesFor, runProbes } from "../eval/report";
import { buildMethods, disposeMethodEdit } from "../eval/methods";
import { worldMethodContext } from "../eval/evaluate";
import { describeBackend, initBackend } from "../model/backend";
import { disposeParams } from "../model/gpt";
import { writeFolder } from "../model/checkpointFolder";
import { disposeEditor } from "../mend/editor";
import { Figure, htmlReport } from "../viz/plots";
import { World } from "../world/world";
import { DEFAULT_EDITOR_DIR, DEFAULT_MODEL_DIR, EDITOR_FLAG, FORCE_FLAG, MODEL_FLAG, guardOutput, loadModelAndEditor, newRunDir } from "./common";
import { CommandSpec, flagBool, Flags, flagString } from "./flags";

export const spec: CommandSpec = {
  name: "demo",
  summary: "President -> Biden with MEND, MEND-cal, FT and FT+KL: before/after tables and an HTML report (npm start)",
  flags: [
    { name: "out", type: "string", value: "DIR", help: "where report.html goes (see --force)", default: "runs/demo-<time>" },
    FORCE_FLAG,
    MODEL_FLAG,
    EDITOR_FLAG,
  ],
};

/** Bar chart: probability of each probe's expected first word after the edit, per method. */
function demoFigure(rows: Record<string, ProbeResult[]>): Figure {
  return {
    data: Object.entries(rows).map(([name, rs]) => ({
      type: "bar",
      name,
      x: rs.map((r) => `${r.kind}: ${r.prompt}`),
      y: rs.map((r) => (r.after.token === firstWord(r.expected) ? r.after.prob : 0)),
    })),
    layout: { title: { text: "President -> Biden: probability of the expected answer after the edit (0 when another token wins)" }, barmode: "group", height: 560, margin: { b: 260 }, xaxis: { tickangle: 40, tickfont: { size: 9 } } },
  };
}

export async function run(f: Flags): Promise<void> {
  const t0 = performance.now();
  const modelDir = flagString(f, "model") ?? DEFAULT_MODEL_DIR;
  const editorDir = flagString(f, "editor") ?? DEFAULT_EDITOR_DIR;
  const out = flagString(f, "out") ?? newRunDir("demo");
  const guard = () => guardOutput(out, "demo-report", { force: flagBool(f, "force"), sources: [modelDir, editorDir] });
  guard(); // before any work
  const backend = await initBackend();
  console.log(`backend: ${describeBackend(backend)}`);
  const { model, editor } = loadModelAndEditor(modelDir, editorDir);
  try {
    const world = World.load();
    const request = { prompt: "The president of the United States is", target: "Biden" };
    const probes = probesFor(world, [request], ["The capital of the United States is", "The president of Russia is"]);
    const tables: Record<string, ProbeResult[]> = {};
    const summary: string[] = [];
    for (const m of buildMethods(["MEND", "MEND-cal", "FT", "FT+KL"], { editor, ...worldMethodContext(world, model) })) {
      const e = m.edit(model, [request]);
      const rows = runProbes(model, e.model, probes);
      disposeMethodEdit(e);
      tables[m.name] = rows;
      const ok = (k: (r: ProbeResult) => boolean) => rows.filter(k).filter((r) => r.right?.after).length + "/" + rows.filter(k).length;
      summary.push(`| ${m.name} | ${ok((r) => r.kind === "edit")} | ${ok((r) => r.kind === "paraphrase")} | ${ok((r) => r.kind.startsWith("locality"))} | ${e.latencyMs.toFixed(0)} ms${e.steps !== undefined ? ` (${e.steps} steps)` : ""} |`);
      console.log(`\n== ${m.name}: "${request.prompt}" -> "${request.target}" (${e.latencyMs.toFixed(1)} ms${e.steps !== undefined ? `, ${e.steps} steps` : ""})\n`);
      console.log(formatProbeTable(rows));
    }
    const table = ["| method | edit | paraphrases | locality kept | latency |", "|---|---|---|---|---|", ...summary].join("\n");
    console.log(`\n${table}`);
    const intro = Object.entries(tables).map(([n, rows]) => `== ${n}\n${formatProbeTable(rows)}`).join("\n\n");
    writeFolder(out, "demo-report", { "report.html": htmlReport("President -> Biden with MEND, MEND-cal, FT and FT+KL", intro, table, [{ title: "Expected answers after the edit", fig: demoFigure(tables) }]) }, { check: guard });
    console.log(`\nreport: ${path.join(out, "report.html")}   (total ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  } finally {
    disposeEditor(editor);
    disposeParams(model.params);
  }
}

