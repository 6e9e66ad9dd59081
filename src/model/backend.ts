/**
 * Backend picker for TensorFlow.js, and the wasm-specific fixes that make training usable there.
 *
 * Order: tfjs-node-gpu, tfjs-node, wasm, cpu. `MEND_BACKEND` (one of those four names) forces one.
 * wasm runs on one thread, or on `MEND_WASM_THREADS=N` through tfjs' threaded build (wasmThreads.ts),
 * falling back to one thread, with the reason, if that build fails to start.
 * The native packages are optionalDependencies: they download libtensorflow at install time, which
 * fails on machines without internet, so each is tried with `require` and skipped with a reason.
 *
 * wasm note (environment.md): XNNPACK only serves 2-D matMul without transpose flags (~15-20 GFLOP/s);
 * transposed or batched products fall back to a naive loop (10-20x slower). tfjs' own BatchMatMul
 * gradient uses transpose flags, so we register a gradient that transposes explicitly and then
 * multiplies without flags. `useFastMatMulGradient(false)` restores tfjs' gradient (the benchmark
 * measures both in one run).
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { enableWasmThreads, wantedWasmThreads } from "./wasmThreads";
import { useWasmKernels } from "./wasmKernels";

export type BackendName = "tensorflow-gpu" | "tensorflow" | "wasm" | "cpu";

export interface BackendChoice {
  /** tfjs backend name actually active (`tf.getBackend()`). */
  backend: string;
  /** What we asked for: node-gpu, node, wasm or cpu. */
  kind: "node-gpu" | "node" | "wasm" | "cpu";
  /** Why each earlier candidate was skipped. */
  skipped: { kind: string; reason: string }[];
  /** True when the explicit-transpose matMul gradient is installed. */
  fastMatMulGradient: boolean;
  /** wasm: the threads XNNPACK runs on (1 = single-thread build); null for other backends. */
  threads: number | null;
  /** wasm: why the threaded build was not used, when it was wanted and failed. */
  threadsFallback?: string;
}

const KINDS = ["node-gpu", "node", "wasm", "cpu"] as const;
type Kind = (typeof KINDS)[number];

let chosen: BackendChoice | null = null;

/**
 * Why a native tfjs package cannot load, or null if its binding is present. The packages download
 * libtensorflow and build `lib/napi-vN/tfjs_binding.node` at install; without network that fails.
 */
function nativeBindingMissing(pkg: string): string | null {
  let root: string;
  try {
    root = path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    return `${pkg} is not installed (it is an optional dependency)`;
  }
  const lib = path.join(root, "lib");
  const found = fs.existsSync(lib) && fs.readdirSync(lib).some((d) => d.startsWith("napi-v") && fs.existsSync(path.join(lib, d, "tfjs_binding.node")));
  return found ? null : `${pkg} is installed without its native binding (libtensorflow could not be downloaded at install time)`;
}

/** Try to make one backend kind active. Returns null on success, or the reason it failed. */
async function tryKind(kind: Kind, wasmThreadsWanted: number): Promise<string | null> {
  try {
    if (kind === "node-gpu" || kind === "node") {
      const pkg = kind === "node-gpu" ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node";
      const missing = nativeBindingMissing(pkg);
      if (missing) return missing; // requiring it anyway would half-register its kernels before failing
      require(pkg);
      if (!(await tf.setBackend("tensorflow"))) return `${pkg} loaded but the "tensorflow" backend did not initialise`;
      return null;
    }
    if (kind === "wasm") return await tryWasm(wasmThreadsWanted);
    if (!(await tf.setBackend("cpu"))) return "cpu backend failed to initialise";
    return null;
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    return msg;
  }
}

let wasmThreads: { threads: number; fallback?: string } = { threads: 1 };

/** The wasm backend: threaded when more than one thread is wanted, else (or if that fails) one thread. */
async function tryWasm(want: number): Promise<string | null> {
  const wasm = require("@tensorflow/tfjs-backend-wasm") as typeof import("@tensorflow/tfjs-backend-wasm");
  let fallback: string | undefined;
  if (want > 1) {
    const factory = tf.findBackendFactory("wasm");
    let patch: ReturnType<typeof enableWasmThreads> | null = null;
    try {
      patch = enableWasmThreads(want);
      if (await tf.setBackend("wasm")) {
        wasmThreads = { threads: wasm.getThreadsCount() };
        return null;
      }
      fallback = patch.failure() ?? "the threaded build did not initialise";
    } catch (e) {
      fallback = e instanceof Error ? e.message.split("\n")[0] : String(e);
    } finally {
      patch?.restore();
    }
    // Start again with the single-thread binary: a fresh registration, threads off.
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
    tf.removeBackend("wasm");
    tf.registerBackend("wasm", factory, WASM_PRIORITY);
  }
  if (!(await tf.setBackend("wasm"))) return "wasm backend failed to initialise";
  wasmThreads = { threads: 1, fallback };
  return null;
}

/** The priority tfjs-backend-wasm registers itself with. */
const WASM_PRIORITY = 2;

/**
 * Pick and activate the best available backend (idempotent: the first choice is cached).
 * Call this before creating any tensor: importing the wasm backend gives it top priority.
 * @param force a kind to use instead of the automatic order; defaults to `process.env.MEND_BACKEND`.
 */
export async function initBackend(force?: string): Promise<BackendChoice> {
  const want = force ?? process.env.MEND_BACKEND;
  if (chosen && (!want || want === chosen.kind)) return chosen;
  let order: Kind[] = [...KINDS];
  if (want) {
    if (!(KINDS as readonly string[]).includes(want)) {
      throw new Error(`MEND_BACKEND="${want}" is not a backend; use one of ${KINDS.join(", ")}`);
    }
    order = [want as Kind];
  }
  const threads = wantedWasmThreads(); // a bad MEND_WASM_THREADS is an error, not a skipped backend
  const skipped: { kind: string; reason: string }[] = [];
  for (const kind of order) {
    const why = await tryKind(kind, threads);
    if (why === null) {
      const fast = kind === "wasm";
      useFastMatMulGradient(fast);
      if (fast) useWasmKernels(true); // data-movement kernels that copy less (wasmKernels.ts)
      chosen = { backend: tf.getBackend(), kind, skipped, fastMatMulGradient: fast, threads: kind === "wasm" ? wasmThreads.threads : null };
      if (kind === "wasm" && wasmThreads.fallback) chosen.threadsFallback = wasmThreads.fallback;
      return chosen;
    }
    skipped.push({ kind, reason: why });
  }
  throw new Error(`no tfjs backend could be initialised: ${skipped.map((s) => `${s.kind}: ${s.reason}`).join("; ")}`);
}

/** The current choice, or null before `initBackend`. */
export function backendChoice(): BackendChoice | null {
  return chosen;
}

/** One line for logs: `wasm, 2 threads + ... (skipped node-gpu: ..., node: ...)`. */
export function describeBackend(c: BackendChoice): string {
  const skips = c.skipped.map((s) => `${s.kind}: ${s.reason}`).join("; ");
  const threads = c.threads === null ? "" : `, ${c.threads} thread${c.threads === 1 ? "" : "s"}${c.threadsFallback ? ` (threaded build failed: ${c.threadsFallback})` : ""}`;
  return `${c.kind}${threads}${c.fastMatMulGradient ? " + explicit-transpose matMul gradient" : ""}${skips ? ` (skipped ${skips})` : ""}`;
}

/** The backend in one short line (notebook banners): which one, its threads, and which faster ones were unavailable. */
export function backendBanner(c: BackendChoice): string {
  const threads = c.threads === null ? "" : `, ${c.threads} thread${c.threads === 1 ? "" : "s"}`;
  const skipped = c.skipped.length ? ` (${c.skipped.map((s) => s.kind).join(", ")} not available; see README)` : "";
  return `tfjs backend: ${c.kind}${threads}${skipped}`;
}

// ---------------------------------------------------------------------------------------------
// matMul gradient without transpose flags

const tfjsMatMulGrad = tf.getGradient("BatchMatMul");

function sameBatchDims(a: tf.Tensor, b: tf.Tensor): boolean {
  if (a.rank !== b.rank) return false;
  for (let i = 0; i < a.rank - 2; i++) if (a.shape[i] !== b.shape[i]) return false;
  return true;
}

/** Swap the last two axes (an explicit copy, so the following matMul needs no flag). */
function t(x: tf.Tensor): tf.Tensor {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return tf.transpose(x, perm);
}

/**
 * Gradient of C = op(A) op(B) written with explicit transposes:
 *   C = A B      : dA = dC Bᵀ,    dB = Aᵀ dC
 *   C = A Bᵀ     : dA = dC B,     dB = dCᵀ A
 *   C = Aᵀ B     : dA = B dCᵀ,    dB = A dC
 *   C = Aᵀ Bᵀ    : dA = Bᵀ dCᵀ,   dB = dCᵀ Aᵀ
 * Broadcast batch dimensions fall back to tfjs' gradient (it reduces over them).
 */
const explicitTransposeMatMulGrad: tf.GradConfig = {
  kernelName: "BatchMatMul",
  inputsToSave: ["a", "b"],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved;
    const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
    const g = dy as tf.Tensor;
    if (!sameBatchDims(a, b)) return tfjsMatMulGrad.gradFunc(dy, saved, attrs);
    if (!transposeA && !transposeB) return { a: () => tf.matMul(g, t(b)), b: () => tf.matMul(t(a), g) };
    if (!transposeA && transposeB) return { a: () => tf.matMul(g, b), b: () => tf.matMul(t(g), a) };
    if (transposeA && !transposeB) return { a: () => tf.matMul(b, t(g)), b: () => tf.matMul(a, g) };
    return { a: () => tf.matMul(t(b), t(g)), b: () => tf.matMul(t(g), t(a)) };
  },
};

let fastGradActive = false;

/** Install (true) or remove (false) the explicit-transpose matMul gradient. Returns the previous state. */
export function useFastMatMulGradient(on: boolean): boolean {
  const prev = fastGradActive;
  tf.registerGradient(on ? explicitTransposeMatMulGrad : tfjsMatMulGrad);
  fastGradActive = on;
  if (chosen) chosen.fastMatMulGradient = on;
  return prev;
}
