/**
 * tfjs' threaded wasm build under Node.
 *
 * `@tensorflow/tfjs-backend-wasm` ships a threaded SIMD binary (XNNPACK on a pthreadpool of Web
 * Workers) but switches it off in Node (tensorflow/tfjs#3830): its loader hands Emscripten two
 * scripts as `Blob` URLs, which Node's `worker_threads` cannot start. Everything else works in Node,
 * because Emscripten's pthread code already speaks `worker_threads`. This module supplies the four
 * things the browser path assumes, and only while the backend initialises:
 *
 * 1. `WASM_HAS_MULTITHREAD_SUPPORT` forced on (tfjs answers false whenever `IS_NODE`).
 * 2. The two scripts as files: the pthread worker script and the module factory each worker runs.
 *    `Blob` is wrapped so its text can be read synchronously, `URL.createObjectURL` writes it to a
 *    private temporary folder (mode 0700, removed when the process exits) and the worker's `load`
 *    message carries that path instead of the Blob.
 * 3. The factory is bundled code that names the bundle's imports (`require$$0` = fs, ...) and
 *    `commonjsGlobal`; a one-line prelude defines them inside the worker.
 * 4. The thread count: tfjs caps it at logical cores / 2 (it assumes two hardware threads per core),
 *    so `os.cpus()` reports twice the wanted count while the binary initialises.
 * 5. Once initialised, Emscripten's pool workers (8, made at start-up) are `unref`ed, so they do not
 *    keep a process whose work is done alive; pool threads only compute while the main thread waits.
 *
 * Results are the same as the single-thread build's: XNNPACK splits a product's output tiles across
 * threads, each element keeps its own summation order (test/wasmThreads.test.ts compares them bit for bit).
 * Hand-written because no package does this; if tfjs changes its loader, `enableWasmThreads`' caller
 * falls back to one thread and says why.
 */
import * as fs from "fs";
import os = require("os");
import * as path from "path";
import * as worker_threads from "worker_threads";
import * as tf from "@tensorflow/tfjs";

/** What the threaded factory script needs defined in a worker (names from the rollup bundle). */
const FACTORY_PRELUDE =
  "var require$$0 = require('fs'), require$$1 = require('path'), require$$3 = require('perf_hooks'), require$$4 = require('os'), commonjsGlobal = globalThis;\n";
const FACTORY_HEAD = "var WasmBackendModuleThreadedSimd";

/** Text recorded by the Blob wrapper, and the file written for it. */
interface RecordedBlob extends Blob {
  mendText?: string;
  mendFile?: string;
}

let scriptDir: string | null = null;

/** The private folder for the scripts, made on first use and removed at exit. */
function scriptFolder(): string {
  if (scriptDir) return scriptDir;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mend-ts-wasm-"));
  scriptDir = dir;
  process.once("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let written = 0;

function blobFile(blob: RecordedBlob): string {
  if (blob.mendFile) return blob.mendFile;
  const text = blob.mendText as string;
  const file = path.join(scriptFolder(), `script${written++}.js`);
  fs.writeFileSync(file, text.startsWith(FACTORY_HEAD) ? FACTORY_PRELUDE + text : text, { mode: 0o600 });
  blob.mendFile = file;
  return file;
}

/**
 * Patch what the threaded loader needs, for `threads` threads. Returns `restore`, which undoes every
 * patch (call it once `tf.setBackend("wasm")` has settled: the workers are loaded by then), and
 * `failure`, the first error of a patch (tfjs reports a failed init without its cause).
 */
export function enableWasmThreads(threads: number): { restore: () => void; failure: () => string | undefined } {
  if (!Number.isInteger(threads) || threads < 2) throw new Error(`enableWasmThreads: want an integer >= 2 threads, got ${threads}`);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const wasm = require("@tensorflow/tfjs-backend-wasm") as typeof import("@tensorflow/tfjs-backend-wasm");
  const NodeBlob = globalThis.Blob;
  const createObjectURL = URL.createObjectURL;
  const cpus = os.cpus;
  const postMessage = worker_threads.Worker.prototype.postMessage;
  const poolWorkers: worker_threads.Worker[] = [];
  let failure: string | undefined;
  const recorded = (blob: RecordedBlob): string => {
    try {
      return blobFile(blob);
    } catch (e) {
      failure ??= `cannot write the threaded build's scripts: ${(e as Error).message}`;
      throw e;
    }
  };

  globalThis.Blob = class RecordingBlob extends NodeBlob {
    mendText: string;
    constructor(parts?: BlobPart[], options?: BlobPropertyBag) {
      super(parts, options);
      this.mendText = (parts ?? []).map((p) => (typeof p === "string" ? p : Buffer.from(p as ArrayBuffer).toString("utf8"))).join("");
    }
  } as typeof Blob;
  URL.createObjectURL = (obj: Blob) => ((obj as RecordedBlob).mendText !== undefined ? recorded(obj as RecordedBlob) : createObjectURL(obj));
  worker_threads.Worker.prototype.postMessage = function (this: worker_threads.Worker, msg: unknown, transfer?: readonly worker_threads.TransferListItem[]) {
    const m = msg as { cmd?: string; urlOrBlob?: RecordedBlob } | null;
    if (m && m.cmd === "load") poolWorkers.push(this);
    if (m && m.urlOrBlob && m.urlOrBlob.mendText !== undefined) msg = { ...m, urlOrBlob: recorded(m.urlOrBlob) };
    return postMessage.call(this, msg, transfer);
  };
  (os as { cpus: typeof os.cpus }).cpus = () => {
    const real = cpus();
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]);
  };
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  wasm.setThreadsCount(threads);

  const restore = () => {
    globalThis.Blob = NodeBlob;
    URL.createObjectURL = createObjectURL;
    worker_threads.Worker.prototype.postMessage = postMessage;
    (os as { cpus: typeof os.cpus }).cpus = cpus;
    for (const w of poolWorkers) w.unref(); // they must not keep a process whose work is done alive
  };
  return { restore, failure: () => failure };
}

/**
 * Threads to ask for: `MEND_WASM_THREADS` (1 to 8, the pthread pool tfjs' binary pre-creates), else 1.
 * One thread is the default because it is faster for what most runs here do: the threaded build wins
 * on large products (a GPT-2-small forward+backward ~1.5x, an edit ~15%) but wakes its pool for every
 * elementwise kernel too (~50-100 µs each), which costs more than it saves on the facts-world model
 * and in a meta-training step (docs/benchmarks.md).
 */
export function wantedWasmThreads(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MEND_WASM_THREADS;
  if (raw === undefined || raw === "") return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 8) throw new Error(`MEND_WASM_THREADS="${raw}" must be an integer from 1 to 8`);
  return n;
}
