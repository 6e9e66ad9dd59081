/**
 * Synchronous reads where a backend has none that work.
 *
 * The library reads tensors synchronously (`dataSync`, `arraySync`): an edit's loss check, α, the
 * scores it reports. tfjs' WebGPU backend reads synchronously by drawing the buffer on a canvas; in
 * headless Chromium (SwiftShader) every such read returns zeros, while its asynchronous read works.
 * A browser cannot wait for an asynchronous read inside synchronous code, so a step is run in
 * passes instead:
 *
 *   pass 1: each synchronous read of a GPU tensor starts that tensor's asynchronous read and returns
 *           zeros; the step runs to its end (or throws), then the reads are awaited.
 *   pass n: the k-th read returns the value the k-th read had in pass n-1, and is read again.
 *   done:   when every read of a pass returned exactly (bit for bit) the value it then had.
 *
 * In the pass that is kept every read returned its tensor's true value, so the step computed what
 * it would with working synchronous reads; a read is right once the reads before it are, so the
 * passes needed are one more than the longest chain of reads whose values feed later reads (a MEND
 * edit: 3). The step must be free of side effects but its return value (every method's `edit` is:
 * the model it is given is never changed); each discarded pass's return value is freed by `discard`.
 * Where synchronous reads work (tfjs' WebGPU on a real GPU, WebGL, wasm), `directReads` runs the
 * step once.
 */
import * as tf from "@tensorflow/tfjs";

/** Run `step` so that its synchronous reads return true values; `discard` frees a pass not kept. */
export interface Reads {
  <T>(step: () => T, discard: (result: T) => void): Promise<T>;
  /** How many times the last step ran. */
  readonly lastPasses: number;
}

/** The backend's own synchronous reads: the step runs once. */
export const directReads: Reads = Object.assign(async <T>(step: () => T) => step(), { lastPasses: 1 });

type Values = Float32Array | Int32Array | Uint8Array;

/** What the passes use of tfjs' WebGPU backend (tfjs-backend-webgpu 4.22, backend_webgpu.js). */
export interface GpuBackend {
  readSync(dataId: object): tf.backend_util.BackendValues;
  tensorMap: { get(dataId: object): { dtype: tf.DataType; shape: number[]; values: unknown; resource: unknown } | undefined };
  getBufferData(buffer: unknown): Promise<ArrayBuffer>;
}

/**
 * Reads settled in passes on `backend` (the current one: WebGPU; see the top of this file). It
 * replaces the backend's `readSync`: outside a step, reading a GPU tensor synchronously is an error
 * rather than silent zeros. `maxPasses` bounds a step whose reads never settle (a backend whose
 * results vary from run to run).
 */
export function settledReads(maxPasses = 12, backend = tf.backend() as unknown as GpuBackend): Reads {
  if (typeof backend.getBufferData !== "function" || !backend.tensorMap) throw new Error(`settled reads need tfjs' WebGPU backend; the current backend is ${tf.getBackend()}`);
  const own = backend.readSync.bind(backend);
  let pass: { known: Values[]; reads: Promise<Values>[] } | null = null;
  backend.readSync = (dataId) => {
    const data = backend.tensorMap.get(dataId);
    if (!data || data.values != null || data.dtype === "string" || data.dtype === "complex64") return own(dataId); // already on the CPU
    if (!pass) throw new Error(`a synchronous read of a GPU tensor outside a settled step: it would return zeros in this browser`);
    const k = pass.reads.length;
    const size = data.shape.reduce((a, b) => a * b, 1);
    // the copy is queued now, before the step can free the tensor; it is awaited after the step
    pass.reads.push(backend.getBufferData(data.resource).then((buf) => valuesOf(buf, data.dtype, size)));
    const known = pass.known[k];
    return known && known.length === size ? known.slice() : zerosOf(data.dtype, size);
  };
  const state = { lastPasses: 0 };
  const reads = async <T>(step: () => T, discard: (result: T) => void): Promise<T> => {
    if (pass) throw new Error("settled reads: a step started inside another step");
    let known: Values[] = [];
    for (let n = 1; n <= maxPasses; n++) {
      state.lastPasses = n;
      pass = { known, reads: [] };
      let out: { result: T } | { error: unknown };
      try {
        out = { result: step() };
      } catch (error) {
        out = { error };
      }
      const queued = pass.reads;
      pass = null;
      const got = await Promise.all(queued);
      if (got.every((v, k) => known[k] !== undefined && sameBits(v, known[k]))) {
        if ("error" in out) throw out.error;
        return out.result;
      }
      if ("result" in out) discard(out.result);
      known = got;
    }
    throw new Error(`the backend's reads did not settle in ${maxPasses} passes (its results differ from run to run): choose another backend`);
  };
  return Object.defineProperty(reads, "lastPasses", { get: () => state.lastPasses }) as Reads;
}

function valuesOf(buf: ArrayBuffer, dtype: tf.DataType, size: number): Values {
  if (dtype === "float32") return new Float32Array(buf, 0, size).slice();
  const ints = new Int32Array(buf, 0, size);
  return dtype === "bool" ? Uint8Array.from(ints) : ints.slice();
}

function zerosOf(dtype: tf.DataType, size: number): Values {
  return dtype === "float32" ? new Float32Array(size) : dtype === "bool" ? new Uint8Array(size) : new Int32Array(size);
}

function sameBits(a: Values, b: Values): boolean {
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.every((v, i) => v === y[i]);
}
