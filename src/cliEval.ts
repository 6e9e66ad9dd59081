/**
 * `mend eval` (MEND vs FT vs FT+KL on the test split, or `--split val` to compare configurations: table, JSON, HTML report) and `mend demo`
 * (`npm start`: the President -> Biden edit with every method, before/after, and a report).
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describeBackend, initBackend } from "./backend";
import { checkFlags, DEFAULT_BATCH_EDITOR_DIR, DEFAULT_EDITOR_DIR, DEFAULT_MODEL_DIR, num, PACKAGE_ROOT, parseArgs } from "./cli";
import { disposeEditor, Editor } from "./editor";
import { loadEditor } from "./editorIO";
import { DEFAULT_EVAL_CONFIG, EvalResult, evaluateMethods, trainingSplitProbes, trainingSplitPrompts } from "./evaluate";
import { BATCH_EDITOR_PRESERVATION, buildPreservationSet, disposePreservationSet } from "./preserve";
import { ModelView } from "./score";
import { disposeParams } from "./gpt";
import { BATCH_EDITOR_CALIBRATION, DEFAULT_CALIBRATION, validateCalibration } from "./calibrate";
import { DEFAULT_FT_CONFIG, disposeMethodEdit, EditMethod, FineTuneConfig, FineTuneOptimizer, fineTuneMethod, mendMethod, validateFineTune } from "./methods";
import { loadModel, Model } from "./params";
import { evalFigures, Figure, htmlReport, markdownTable } from "./plots";
import { firstWord, formatProbeTable, ProbeResult, probesFor, runProbes } from "./report";
import { writeFileAtomic } from "./safetensors";
import { World } from "./world";

/** What `standardMethods` may be given beyond the single-edit editor. */
export interface StandardMethodOptions {
  /** The editor trained for batched edits (methods MEND-batch*). */
  batchEditor?: Editor;
  /** Overrides the calibration margin of MEND-cal and MEND-batch-cal. */
  margin?: number;
  /** The base model (MEND-batch-pres measures its preservation set on it). */
  model?: ModelView;
  /** Overrides FT's and FT+KL's lr and optimiser (default DEFAULT_FT_CONFIG). */
  ft?: Partial<Pick<FineTuneConfig, "lr" | "optimizer">>;
}

/**
 * The methods compared everywhere, on the same edited weights: MEND, FT, FT+KL, MEND-batch (MEND with
 * the editor trained for batched edits, when `batchEditor` is given), MEND-cal / MEND-batch-cal
 * (the same editors with edit-time step calibration, calibrate.ts; `margin` overrides both margins),
 * and MEND-batch-pres (MEND-batch-cal with edit-time preservation of same-answer knowledge,
 * preserve.ts; needs `model`). Free the methods with their `dispose`.
 */
export function standardMethods(editor: Editor, world: World, names: readonly string[] = ["MEND", "FT", "FT+KL"], opts: StandardMethodOptions = {}): EditMethod[] {
  const { batchEditor, margin, model } = opts;
  const inner = editor.config.innerParams;
  const ft = { ...DEFAULT_FT_CONFIG, ...opts.ft };
  validateFineTune(ft);
  const needBatch = (name: string): Editor => {
    if (!batchEditor) throw new Error(`method ${name} needs the batch-trained editor: train it (README) or pass --batch-editor DIR`);
    return batchEditor;
  };
  const all: Record<string, () => EditMethod> = {
    MEND: () => mendMethod(editor),
    "MEND-cal": () => mendMethod(editor, "MEND-cal", { ...DEFAULT_CALIBRATION, ...(margin ? { margin } : {}) }),
    "MEND-batch": () => mendMethod(needBatch("MEND-batch"), "MEND-batch"),
    "MEND-batch-cal": () => mendMethod(needBatch("MEND-batch-cal"), "MEND-batch-cal", { ...BATCH_EDITOR_CALIBRATION, ...(margin ? { margin } : {}) }),
    "MEND-batch-pres": () => {
      if (!model) throw new Error("method MEND-batch-pres needs the base model (its preservation set is measured on it)");
      const e = needBatch("MEND-batch-pres");
      const set = buildPreservationSet(model, e.config.innerParams, trainingSplitPrompts(world));
      return { ...mendMethod(e, "MEND-batch-pres", BATCH_EDITOR_CALIBRATION, { ...BATCH_EDITOR_PRESERVATION, set }), dispose: () => disposePreservationSet(set) };
    },
    FT: () => fineTuneMethod({ ...ft, innerParams: inner, cEdit: null, locTexts: [] }),
    "FT+KL": () => fineTuneMethod({ ...ft, innerParams: inner, cEdit: 1e-2, locTexts: trainingSplitProbes(world, 16) }),
  };
  return names.map((n) => {
    const f = all[n];
    if (!f) throw new Error(`unknown method "${n}"; choose from ${Object.keys(all).join(", ")}`);
    return f();
  });
}

/** Target checks of the MEND core and evaluation issues, as printed lines; `ftConfig`: the FT settings evaluated. */
export function targetChecks(r: EvalResult, ftConfig: { lr: number; optimizer: string } = DEFAULT_FT_CONFIG): { name: string; value: number; target: string; ok: boolean }[] {
  const m = r.methods.MEND;
  const ft = r.methods.FT;
  const checks: { name: string; value: number; target: string; ok: boolean }[] = [];
  for (const name of ["MEND", "MEND-cal", "MEND-batch-cal", "MEND-batch-pres"]) {
    const x = r.methods[name];
    if (!x) continue;
    checks.push(
      { name: `${name} edit success (edit prompt)`, value: x.es, target: ">= 0.99", ok: x.es >= 0.99 },
      { name: `${name} held-out paraphrases`, value: x.paraphrase, target: ">= 0.95", ok: x.paraphrase >= 0.95 },
      { name: `${name} locality unchanged`, value: x.locality.overall, target: ">= 0.99", ok: x.locality.overall >= 0.99 },
      { name: `${name} locality, same subject`, value: x.locality.same_subject, target: ">= 0.99", ok: x.locality.same_subject >= 0.99 },
      { name: `${name} locality, same relation`, value: x.locality.same_relation, target: ">= 0.99", ok: x.locality.same_relation >= 0.99 },
      { name: `${name} locality, unrelated`, value: x.locality.unrelated, target: ">= 0.99", ok: x.locality.unrelated >= 0.99 },
    );
  }
  for (const name of ["MEND", "MEND-batch", "MEND-batch-cal", "MEND-batch-pres"]) {
    const k25 = r.batched[name]?.find((p) => p.k === 25);
    if (k25) checks.push({ name: `${name} batched ES at k = 25`, value: k25.es, target: ">= 0.90", ok: k25.es >= 0.9 });
  }
  if (ft && m) checks.push({ name: `FT (${ftConfig.optimizer} lr ${ftConfig.lr.toExponential(0)}) latency / MEND latency (mend bench also times lr 1e-4)`, value: ft.latency_ms / m.latency_ms, target: ">= 10", ok: ft.latency_ms / m.latency_ms >= 10 });
  const cal = r.methods["MEND-cal"];
  if (ft && cal) checks.push({ name: `FT latency / MEND-cal latency`, value: ft.latency_ms / cal.latency_ms, target: ">= 10", ok: ft.latency_ms / cal.latency_ms >= 10 });
  return checks;
}

function loadBoth(a: ReturnType<typeof parseArgs>): { model: Model; editor: Editor } {
  const model = loadModel(a.flags.model?.[0] ?? DEFAULT_MODEL_DIR);
  try {
    return { model, editor: loadEditor(a.flags.editor?.[0] ?? DEFAULT_EDITOR_DIR, model.config, model.params) };
  } catch (e) {
    disposeParams(model.params);
    throw e;
  }
}

export async function cmdEval(argv: string[]): Promise<void> {
  const a = parseArgs(argv, ["json"]);
  checkFlags(a, ["json", "methods", "batch-sizes", "sequential", "out", "model", "editor", "batch-editor", "limit", "jobs", "worker", "split", "calibrate", "ft-lr", "ft-optimizer"]);
  // Compare configurations on "val"; report on "test" (the default).
  const split = a.flags.split?.[0] ?? "test";
  if (split !== "val" && split !== "test") throw new Error(`--split must be "val" or "test", got "${split}"`);
  const batchDir = a.flags["batch-editor"]?.[0] ?? DEFAULT_BATCH_EDITOR_DIR;
  // Given explicitly, the batch editor is evaluated (a wrong folder is then a clear load error); by default only if shipped.
  const haveBatch = a.flags["batch-editor"] !== undefined || fs.existsSync(path.join(batchDir, "config.json"));
  const names = (a.flags.methods?.[0] ?? (haveBatch ? "MEND,MEND-cal,MEND-batch,MEND-batch-cal,FT,FT+KL" : "MEND,MEND-cal,FT,FT+KL")).split(",").map((x) => x.trim());
  const margin = a.flags.calibrate ? num(a, "calibrate", DEFAULT_CALIBRATION.margin) : undefined;
  if (margin !== undefined) validateCalibration({ ...DEFAULT_CALIBRATION, margin });
  const ft = { lr: num(a, "ft-lr", DEFAULT_FT_CONFIG.lr), optimizer: (a.flags["ft-optimizer"]?.[0] ?? DEFAULT_FT_CONFIG.optimizer) as FineTuneOptimizer };
  validateFineTune(ft);
  const jobs = Math.max(1, Math.min(names.length, a.flags.jobs ? Number(a.flags.jobs[0]) : os.cpus().length));
  const backend = await initBackend();
  console.error(`backend: ${describeBackend(backend)}`);
  const { model, editor } = loadBoth(a);
  let batchEditor: Editor | undefined;
  let methods: EditMethod[] = [];
  try {
    const world = World.load();
    let r: EvalResult;
    if (jobs > 1 && !a.flags.worker) {
      // The wasm backend is single-threaded: evaluate the methods in parallel worker processes.
      r = await evalInWorkers(argv, names, jobs);
    } else {
      batchEditor = names.some((n) => n.startsWith("MEND-batch")) ? loadEditor(batchDir, model.config, model.params) : undefined;
      methods = standardMethods(editor, world, names, { batchEditor, margin, model, ft });
      let records = world.editRecords(split);
      if (a.flags.limit) records = records.slice(0, Number(a.flags.limit[0]));
      const cfg = {
        ...DEFAULT_EVAL_CONFIG,
        batchSizes: a.flags["batch-sizes"] ? a.flags["batch-sizes"][0].split(",").map(Number) : DEFAULT_EVAL_CONFIG.batchSizes,
        sequential: a.flags.sequential ? Number(a.flags.sequential[0]) : DEFAULT_EVAL_CONFIG.sequential,
      };
      r = evaluateMethods(model, world, methods, records, cfg, (s2) => console.error(s2));
    }
    if (a.flags.worker) {
      console.log(JSON.stringify(r));
      return;
    }
    const out = a.flags.out?.[0] ?? path.join(PACKAGE_ROOT, "reports", "eval");
    writeEvalOutputs(out, r);
    const checks = targetChecks(r, ft);
    if (a.flags.json?.[0] === "true") {
      console.log(JSON.stringify({ backend: backend.kind, split, ...r, targets: checks, out }));
      return;
    }
    console.log(markdownTable(r.methods));
    console.log(`\nbatched edits (ES / locality unchanged):`);
    for (const [name, pts] of Object.entries(r.batched)) console.log(`  ${name.padEnd(10)} ${pts.map((p) => `k=${p.k}: ${p.es.toFixed(3)} / ${p.locality.toFixed(3)}`).join("   ")}`);
    for (const [name, c] of Object.entries(r.sequential)) {
      console.log(`sequential ${name}: after ${c.retention.length} edits retention ${c.retention[c.retention.length - 1]?.toFixed(3)}, locality ${c.locality[c.locality.length - 1]?.toFixed(3)}`);
    }
    console.log(`\ntargets:`);
    for (const c of checks) console.log(`  ${c.ok ? "PASS" : "MISS"}  ${c.name}: ${c.value.toFixed(3)} (${c.target})`);
    console.log(`\n${r.n_test} ${split} edits, ${r.elapsed_sec.toFixed(0)} s; wrote ${out}/results.json, results.md, report.html`);
  } finally {
    for (const m of methods) m.dispose?.();
    if (batchEditor) disposeEditor(batchEditor);
    disposeEditor(editor);
    disposeParams(model.params);
  }
}

/** Run `mend eval --worker` per method, `jobs` at a time (slowest first), and merge the results. */
async function evalInWorkers(argv: string[], names: string[], jobs: number): Promise<EvalResult> {
  const t0 = performance.now();
  const cost: Record<string, number> = { "FT+KL": 3, FT: 2, "MEND-cal": 1.5, "MEND-batch-cal": 1.5, "MEND-batch-pres": 1.8, MEND: 1, "MEND-batch": 1 };
  const queue = [...names].sort((x, y) => (cost[y] ?? 1) - (cost[x] ?? 1));
  const base = argv.filter((x, i) => !["--methods", "--jobs", "--json", "--out"].includes(x) && !["--methods", "--jobs", "--out"].includes(argv[i - 1]) && !x.startsWith("--methods=") && !x.startsWith("--jobs="));
  const parts: EvalResult[] = [];
  const runOne = (name: string) =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, "bin", "mend.js"), "eval", ...base, "--methods", name, "--jobs", "1", "--worker"], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.on("close", (code) => {
        if (code !== 0) return reject(new Error(`evaluation of ${name} failed (exit ${code})`));
        parts.push(JSON.parse(out.trim().split("\n").pop()!));
        resolve();
      });
    });
  const workers = Array.from({ length: jobs }, async () => {
    for (let n = queue.shift(); n; n = queue.shift()) await runOne(n);
  });
  await Promise.all(workers);
  const merged: EvalResult = { n_test: parts[0].n_test, methods: {}, drift: {}, heatmap: {}, batched: {}, sequential: {}, elapsed_sec: (performance.now() - t0) / 1000 };
  for (const n of names) {
    const p = parts.find((x) => x.methods[n]);
    if (!p) throw new Error(`no result for ${n}`);
    merged.methods[n] = p.methods[n];
    merged.drift[n] = p.drift[n];
    merged.heatmap[n] = p.heatmap[n];
    merged.batched[n] = p.batched[n];
    if (p.sequential[n]) merged.sequential[n] = p.sequential[n];
  }
  return merged;
}

export function writeEvalOutputs(out: string, r: EvalResult): void {
  fs.mkdirSync(out, { recursive: true });
  writeFileAtomic(path.join(out, "results.json"), JSON.stringify(r, null, 1) + "\n");
  const md = `# mend eval\n\n${markdownTable(r.methods)}\n`;
  writeFileAtomic(path.join(out, "results.md"), md);
  const intro = `MEND vs fine-tuning on ${r.n_test} test edits of the facts world (held-out subjects; paraphrases use held-out templates).\nES = every target token is the argmax; locality = fraction of locality answers whose argmax tokens are unchanged.`;
  writeFileAtomic(path.join(out, "report.html"), htmlReport("mend-ts evaluation", intro, markdownTable(r.methods), evalFigures(r)));
}

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

export async function cmdDemo(argv: string[]): Promise<void> {
  const a = parseArgs(argv);
  const t0 = performance.now();
  const backend = await initBackend();
  console.log(`backend: ${describeBackend(backend)}`);
  const { model, editor } = loadBoth(a);
  try {
    const world = World.load();
    const request = { prompt: "The president of the United States is", target: "Biden" };
    const probes = probesFor(world, [request], ["The capital of the United States is", "The president of Russia is"]);
    const tables: Record<string, ProbeResult[]> = {};
    const summary: string[] = [];
    for (const m of standardMethods(editor, world, ["MEND", "MEND-cal", "FT", "FT+KL"])) {
      const e = m.edit(model, [request]);
      const rows = runProbes(model, e.params, probes);
      disposeMethodEdit(e);
      tables[m.name] = rows;
      const ok = (k: (r: ProbeResult) => boolean) => rows.filter(k).filter((r) => r.after.token === firstWord(r.expected)).length + "/" + rows.filter(k).length;
      summary.push(`| ${m.name} | ${ok((r) => r.kind === "edit")} | ${ok((r) => r.kind === "paraphrase")} | ${ok((r) => r.kind.startsWith("locality"))} | ${e.latencyMs.toFixed(0)} ms${e.steps !== undefined ? ` (${e.steps} steps)` : ""} |`);
      console.log(`\n== ${m.name}: "${request.prompt}" -> "${request.target}" (${e.latencyMs.toFixed(1)} ms${e.steps !== undefined ? `, ${e.steps} steps` : ""})\n`);
      console.log(formatProbeTable(rows));
    }
    const table = ["| method | edit | paraphrases | locality kept | latency |", "|---|---|---|---|---|", ...summary].join("\n");
    console.log(`\n${table}`);
    const out = a.flags.out?.[0] ?? path.join(PACKAGE_ROOT, "reports", "demo");
    fs.mkdirSync(out, { recursive: true });
    const intro = Object.entries(tables).map(([n, rows]) => `== ${n}\n${formatProbeTable(rows)}`).join("\n\n");
    writeFileAtomic(path.join(out, "report.html"), htmlReport("President -> Biden with MEND, MEND-cal, FT and FT+KL", intro, table, [{ title: "Expected answers after the edit", fig: demoFigure(tables) }]));
    console.log(`\nreport: ${path.join(out, "report.html")}   (total ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  } finally {
    disposeEditor(editor);
    disposeParams(model.params);
  }
}

