/**
 * `mend lifelong`: the lifelong benchmark (eval/lifelong.ts). One seeded stream of edits, every
 * method on it in its own process (2 at a time by default), measured every --every edits; prints the
 * table at the reported lengths and the targets, writes results.json, results.md and report.html.
 */
import * as os from "os";
import { datasetStream, LifelongCurve, LifelongStream, runLifelong, worldStream } from "../eval/lifelong";
import { buildMethods, EditMethod } from "../eval/methods";
import { DEFAULT_LIFELONG } from "../lifelong";
import { checkRecordsTokenize, loadDataset, parseDataSpec } from "../datasets/records";
import { describeBackend, initBackend } from "../model/backend";
import { disposeParams } from "../model/gpt";
import { writeFolder } from "../model/checkpointFolder";
import { loadModel } from "../model/modelFolder";
import { disposeEditor, Editor, lastBlocksMlp } from "../mend/editor";
import { loadEditor } from "../extensions/editorExtensions";
import { lifelongFigures, lifelongTable, lifelongTargets, LifelongResult } from "../eval/lifelongReport";
import { htmlReport } from "../viz/plots";
import { World } from "../world/world";
import { DEFAULT_EDITOR_DIR, DEFAULT_MODEL_DIR, FORCE_FLAG, JSON_FLAG, MODEL_FLAG, guardOutput, newRunDir, runMendChild, WEIGHTS_FLAG } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";
import { ProgressBar } from "./progress";

const WORLD_METHODS = ["MEND", "FT", "FT+KL", "UltraEdit", "AlphaEdit", "LocFT-BF"];
const DATA_METHODS = ["FT", "FT+KL", "UltraEdit", "AlphaEdit", "LocFT-BF"];
/** Methods a stream can run beyond the defaults: GRACE (a codebook; 200 Adam steps per edit, slow on long streams). */
const EXTRA_METHODS = ["GRACE"];
/** What a stream can run: methods that need no editor folder but --editor's (KE, ENN and MEND-batch take folders this command has no flag for; the cache needs its threshold chosen on validation edits). */
const STREAM_METHODS = ["MEND", "MEND-cal", ...DATA_METHODS, ...EXTRA_METHODS];

export const spec: CommandSpec = {
  name: "lifelong",
  summary: "the lifelong benchmark: one stream of edits applied one after another, retention, paraphrases, locality and weight growth every 10 edits (writes a new runs/lifelong-<time>/)",
  flags: [
    { name: "methods", type: "strings", value: "M,...", help: `methods on the stream (default ${WORLD_METHODS.join(",")}; with --data ${DATA_METHODS.join(",")})`, choices: STREAM_METHODS },
    { name: "edits", type: "int", value: "N", help: "edits in the stream", default: 500, min: 1 },
    { name: "every", type: "int", value: "K", help: "measure after every K edits (and at the end)", default: 10, min: 1 },
    { name: "report", type: "ints", value: "N,...", help: "stream lengths the table shows (the stream of N edits is the first N of the longest)", default: "10,100,500", min: 1 },
    { name: "seed", type: "int", value: "S", help: "the stream's seed (facts, targets, order)", default: 0, min: 0 },
    { name: "data", type: "string", value: "KIND:FILE", help: "a stream of zsre:FILE or counterfact:FILE records on a GPT-2 folder (--model) instead of the facts world" },
    WEIGHTS_FLAG,
    { name: "out", type: "string", value: "DIR", help: "where results.json, results.md and report.html go (see --force)", default: "runs/lifelong-<time>" },
    FORCE_FLAG,
    MODEL_FLAG,
    { name: "editor", type: "string", value: "DIR", help: "the editor MEND uses", default: "checkpoints/editor" },
    JSON_FLAG,
    { name: "ft-lr", type: "number", value: "LR", help: "LocFT-BF's Adam lr (official fine-tune.py: 5e-4 on 7B models)", default: DEFAULT_LIFELONG.ftLr, above: 0, advanced: true },
    { name: "alpha-lambda", type: "number", value: "λ", help: "AlphaEdit's ridge λ (official L2: 10, hparams/AlphaEdit/*.yaml)", default: DEFAULT_LIFELONG.alphaLambda, above: 0, advanced: true },
    { name: "jobs", type: "int", value: "N", help: "methods run in parallel processes", default: "cores", min: 1, advanced: true },
    { name: "worker", type: "boolean", help: "(internal) run the one method given and print its curve as JSON", advanced: true },
  ],
  notes: ["example: mend lifelong --edits 100 --report 10,100", "example: mend lifelong --data counterfact:data/counterfact/counterfact-val.json --model DIR --edits 200"],
};

/** The stream of the run: the facts world's, or a dataset's (its records must tokenize). */
function streamOf(f: Flags, n: number, seed: number, tokenizer?: Parameters<typeof checkRecordsTokenize>[1]): LifelongStream {
  const data = flagString(f, "data");
  if (!data) return worldStream(World.load(), n, seed);
  const { kind, file } = parseDataSpec(data);
  const ds = loadDataset(kind, file);
  if (tokenizer) checkRecordsTokenize(ds, tokenizer);
  return datasetStream(ds.records, n, seed, `${kind}:${file}`);
}

/** One method through the stream, in this process. */
async function runWorker(f: Flags, name: string): Promise<LifelongCurve> {
  const modelDir = flagString(f, "model") ?? DEFAULT_MODEL_DIR;
  const model = loadModel(modelDir);
  let editor: Editor | undefined;
  let methods: EditMethod[] = [];
  try {
    const stream = streamOf(f, flagNumber(f, "edits") ?? 500, flagNumber(f, "seed") ?? 0, model.tokenizer);
    if (name.startsWith("MEND")) editor = loadEditor(flagString(f, "editor") ?? DEFAULT_EDITOR_DIR, model.config, model.params);
    const innerParams = editor?.config.innerParams ?? lastBlocksMlp(model.config.n_layer);
    methods = buildMethods([name], { ...(editor ? { editor } : {}), innerParams, locTexts: stream.preserve.slice(0, 16), lifelong: { model, ...(f.weights ? { weights: f.weights as string[] } : {}), preserve: stream.preserve, options: { ...(flagNumber(f, "ft-lr") !== undefined ? { ftLr: flagNumber(f, "ft-lr")! } : {}), ...(flagNumber(f, "alpha-lambda") !== undefined ? { alphaLambda: flagNumber(f, "alpha-lambda")! } : {}) } } });
    let said = performance.now();
    const onEdit = (done: number, sec: number) => {
      if (performance.now() - said < 30_000) return; // between measurements, a line every 30 s
      said = performance.now();
      console.error(`${name}: ${done} of ${stream.edits.length} edits, ${sec.toFixed(0)} s of editing`);
    };
    return runLifelong(model, methods[0], stream, flagNumber(f, "every") ?? 10, (p) => console.error(`${name}: ${p.edits} edits, retention ${p.retention.toFixed(3)}, locality ${p.locality.overall.toFixed(3)}`), onEdit);
  } finally {
    for (const m of methods) m.dispose?.();
    if (editor) disposeEditor(editor);
    disposeParams(model.params);
  }
}

export async function run(f: Flags, argv: readonly string[]): Promise<void> {
  const names = (f.methods as string[] | undefined) ?? (flagString(f, "data") ? DATA_METHODS : WORLD_METHODS);
  if (flagString(f, "data")) {
    const bad = names.filter((n) => n.startsWith("MEND") || ["KE", "ENN", "cache"].includes(n));
    if (bad.length) throw new Error(`--data streams run the methods that need no trained editor (${DATA_METHODS.join(", ")}); ${bad.join(", ")} need one trained for the model`);
  }
  const backend = await initBackend();
  if (flagBool(f, "worker")) {
    if (names.length !== 1) throw new Error("--worker runs exactly one method");
    console.log(JSON.stringify(await runWorker(f, names[0])));
    return;
  }
  const out = flagString(f, "out") ?? newRunDir("lifelong");
  const modelDir = flagString(f, "model") ?? DEFAULT_MODEL_DIR;
  const guard = () => guardOutput(out, "lifelong-report", { force: flagBool(f, "force"), sources: [modelDir] });
  guard();
  const n = flagNumber(f, "edits") ?? 500;
  const report = ((f.report as number[] | undefined) ?? [10, 100, 500]).filter((k) => k <= n);
  if (!report.includes(n)) report.push(n);
  const stream = streamOf(f, n, flagNumber(f, "seed") ?? 0); // checked here, before any worker starts
  console.error(`backend: ${describeBackend(backend)}; stream: ${n} edits of ${stream.source}, ${stream.probes.length} probe prompts`);
  const jobs = Math.max(1, Math.min(names.length, flagNumber(f, "jobs") ?? os.cpus().length));
  const base = argv.filter((x, i) => !["--methods", "--jobs", "--json", "--out", "--force", "--report"].includes(x) && !["--methods", "--jobs", "--out", "--report"].includes(argv[i - 1]) && !/^--(methods|jobs|out|report)=/.test(x));
  const cost: Record<string, number> = { "LocFT-BF": 4, "FT+KL": 3, FT: 1.5, AlphaEdit: 1.2 }; // slowest first: the two cores stay busy
  const queue = [...names].sort((x, y) => (cost[y] ?? 1) - (cost[x] ?? 1));
  const curves: Record<string, LifelongCurve> = {};
  const bar = new ProgressBar(names.length, "methods");
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: jobs }, async () => {
      for (let m = queue.shift(); m; m = queue.shift()) {
        curves[m] = (await runMendChild(["lifelong", ...base, "--methods", m, "--worker"], `the lifelong run of ${m}`)) as LifelongCurve;
        bar.update(++done, {});
      }
    }),
  );
  bar.done();
  const result: LifelongResult = { source: stream.source, edits: n, every: flagNumber(f, "every") ?? 10, report, probes: stream.probes.length, backend: backend.kind, seconds: (performance.now() - t0) / 1000, curves: Object.fromEntries(names.map((m) => [m, curves[m]])) };
  const targets = lifelongTargets(result);
  const table = lifelongTable(result);
  const intro = `${n} edits of ${stream.source}, one after another; measured every ${result.every} edits on all edits so far and ${stream.probes.length} fixed probe prompts.`;
  writeFolder(out, "lifelong-report", { "results.json": JSON.stringify({ ...result, targets }, null, 1) + "\n", "results.md": `# mend lifelong\n\n${intro}\n\n${table}\n`, "report.html": htmlReport("mend-ts lifelong editing", intro, table, lifelongFigures(result)) }, { check: guard });
  if (flagBool(f, "json")) {
    console.log(JSON.stringify({ ...result, targets, out }));
    return;
  }
  console.log(table);
  if (targets.length) {
    console.log(`\ntargets:`);
    for (const t of targets) console.log(`  ${t.ok ? "PASS" : "MISS"}  ${t.name}: ${t.best}`);
  }
  console.log(`\n${result.seconds.toFixed(0)} s; wrote ${out}/results.json, results.md, report.html`);
}
