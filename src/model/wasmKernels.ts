/**
 * Data-movement kernels for tfjs' wasm backend that move no more memory than they must.
 *
 * tfjs-backend-wasm 4.22 writes some kernels in JavaScript around the heap, and several move far more
 * memory than they must. In the facts-world model's forward+backward (64 sentences x 14 tokens,
 * 4 x 128) SplitV, Slice, Identity, Cast and Transpose took 115 of 468 ms in kernels (experiments/kernel-profile
 * as of commit 9533447):
 *  - `Slice` reads its input with `readSync`, which copies the *whole* input out of the wasm heap into
 *    a fresh JavaScript buffer, then copies the slice's rows one `subarray` at a time. `SplitV` calls
 *    it once per piece: splitting GPT-2's fused q, k, v copied the [N, 3C] activations three times.
 *  - `Identity` and a `Cast` to the same dtype copy their input, where tfjs' cpu and webgl backends
 *    share it by reference count (the gradient tape makes hundreds of them per backward pass).
 *  - `Transpose` of a matrix walks its output with a stride of a row, and `Sum` over outer axes (the
 *    bias gradients) transposes with it first.
 *
 * The replacements copy inside the heap (`copyWithin` on one view of it: no allocation), share data
 * where the cpu backend does, and transpose in 32 x 32 tiles. They move the same bytes to the same
 * places (and `Sum` still sums with the library's kernel), so every result is bit for bit the
 * library's (test/wasmKernels.test.ts compares them on random shapes). Hand-written because no
 * package provides them; `useWasmKernels(false)` restores the library's.
 */
import * as tf from "@tensorflow/tfjs";

/** The parts of tfjs' wasm backend these kernels use. */
interface WasmBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  incRef(dataId: object): void;
  disposeData(dataId: object): void;
}

/** Bytes per element of the dtypes the heap copies handle (the rest go to the library's kernels). */
const WORD_DTYPES = new Set<tf.DataType>(["float32", "int32"]);

/**
 * Copy x[begin : begin + size] into a new tensor, run by run, inside the wasm heap.
 * A run is the longest stretch that is contiguous in both: the trailing axes the slice takes whole,
 * times the slice's extent on the axis before them.
 */
function heapSlice(backend: WasmBackend, x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
  const out = backend.makeOutput(size, x.dtype);
  const total = size.reduce((a, b) => a * b, 1);
  if (total === 0) return out;
  const strides = [...tf.util.computeStrides(x.shape), 1];
  // axes [inner, rank) form one run
  let inner = x.shape.length - 1;
  while (inner > 0 && size[inner] === x.shape[inner]) inner--;
  const run = size.slice(inner).reduce((a, b) => a * b, 1);
  const heap = new Int32Array(backend.wasm.HEAPU8.buffer); // 4-byte words: float32 and int32 alike
  const src0 = backend.dataIdMap.get(x.dataId).memoryOffset / 4;
  let dst = backend.dataIdMap.get(out.dataId).memoryOffset / 4;
  const idx = begin.slice(0, inner); // odometer over the axes before the run
  const runs = total / run;
  for (let r = 0; r < runs; r++) {
    let off = src0 + begin[inner] * strides[inner];
    for (let a = 0; a < inner; a++) off += idx[a] * strides[a];
    heap.copyWithin(dst, off, off + run);
    dst += run;
    for (let a = inner - 1; a >= 0; a--) {
      if (++idx[a] < begin[a] + size[a]) break;
      idx[a] = begin[a];
    }
  }
  return out;
}

function sliceKernel(library: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (!WORD_DTYPES.has(x.dtype)) return library(args);
    const { begin, size } = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
    const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
    return heapSlice(args.backend as WasmBackend, x, b, s);
  };
}

function splitVKernel(library: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (!WORD_DTYPES.has(x.dtype)) return library(args);
    const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((n) => {
      const size = [...x.shape];
      size[ax] = n;
      const piece = heapSlice(args.backend as WasmBackend, x, [...begin], size);
      begin[ax] += n;
      return piece;
    });
  };
}

/**
 * `perm` with size-1 axes dropped and axes that stay neighbours in order merged: the smallest
 * equivalent transpose, as [shape, perm]. [B, T, C] by [0, 2, 1] stays; [B, H, T, hs] by [0, 1, 3, 2]
 * becomes [B·H, T, hs] by [0, 2, 1].
 */
function collapsed(shape: readonly number[], perm: readonly number[]): [number[], number[]] {
  const keep = perm.filter((a) => shape[a] !== 1);
  const groups: number[][] = []; // runs of input axes that stay consecutive in the output
  for (const a of keep) {
    const g = groups[groups.length - 1];
    if (g && g[g.length - 1] + 1 === a) g.push(a);
    else groups.push([a]);
  }
  const order = [...groups].sort((g, h) => g[0] - h[0]); // the groups in input order
  const cShape = order.map((g) => g.reduce((n, a) => n * shape[a], 1));
  return [cShape, groups.map((g) => order.indexOf(g))];
}

/**
 * A batch of matrix transposes, [batch, R, C] -> [batch, C, R], in 32 x 32 tiles over the heap
 * (tfjs' wasm kernel walks the output with a stride of R floats: 1.3-4.8 ms of CPU for a [896, 512]
 * matrix either way beside other runs, where tiles took 0.6-1.2 ms). Returns null for any other
 * permutation (the library's kernel then runs).
 */
function heapSwapLastTwo(backend: WasmBackend, x: tf.TensorInfo, perm: number[]): tf.TensorInfo | null {
  const [shape, p] = collapsed(x.shape, perm);
  const n = shape.length;
  const swap = n >= 2 && p[n - 1] === n - 2 && p[n - 2] === n - 1 && p.slice(0, n - 2).every((a, i) => a === i);
  if (!swap) return null;
  const R = shape[n - 2];
  const C = shape[n - 1];
  const batch = shape.slice(0, n - 2).reduce((a, b) => a * b, 1);
  const out = backend.makeOutput(perm.map((a) => x.shape[a]), x.dtype);
  const heap = new Int32Array(backend.wasm.HEAPU8.buffer);
  const src0 = backend.dataIdMap.get(x.dataId).memoryOffset / 4;
  const dst0 = backend.dataIdMap.get(out.dataId).memoryOffset / 4;
  const TILE = 32;
  for (let b = 0; b < batch; b++) {
    const src = src0 + b * R * C;
    const dst = dst0 + b * R * C;
    for (let i0 = 0; i0 < R; i0 += TILE) {
      const i1 = Math.min(i0 + TILE, R);
      for (let j0 = 0; j0 < C; j0 += TILE) {
        const j1 = Math.min(j0 + TILE, C);
        for (let i = i0; i < i1; i++) {
          let s = src + i * C + j0;
          let d = dst + j0 * R + i;
          for (let j = j0; j < j1; j++, s++, d += R) heap[d] = heap[s];
        }
      }
    }
  }
  return out;
}

function transposeKernel(library: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { perm } = args.attrs as unknown as { perm: number[] };
    return (WORD_DTYPES.has(x.dtype) && heapSwapLastTwo(args.backend as WasmBackend, x, perm)) || library(args);
  };
}

/**
 * Sum over axes that are not the innermost: tfjs' wasm Sum transposes them inward with its own
 * transpose kernel (not the registered one), then sums the inner axes. Here the transpose is ours
 * where it applies; the summing is the library's, so the result is the library's bit for bit.
 */
function sumKernel(library: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const axes = tf.util.parseAxisParam(axis, x.shape);
    const perm = tf.backend_util.getAxesPermutation(axes, x.shape.length);
    if (perm === null || !WORD_DTYPES.has(x.dtype)) return library(args);
    const backend = args.backend as WasmBackend;
    const moved = heapSwapLastTwo(backend, x, perm);
    if (!moved) return library(args);
    try {
      const inner = tf.backend_util.getInnerMostAxes(axes.length, x.shape.length);
      const out = library({ ...args, inputs: { x: moved }, attrs: { axis: inner, keepDims: false } }) as tf.TensorInfo;
      if (keepDims) out.shape = tf.backend_util.expandShapeToKeepDim(out.shape, axes);
      return out;
    } finally {
      backend.disposeData(moved.dataId);
    }
  };
}

/** The input itself, by reference count (as tfjs' cpu backend does). */
function shared(backend: WasmBackend, x: tf.TensorInfo): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

function identityKernel(library: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    return x.dtype === "string" ? library(args) : shared(args.backend as WasmBackend, x);
  };
}

function castKernel(library: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { dtype } = args.attrs as unknown as { dtype: tf.DataType };
    return dtype === x.dtype && dtype !== "string" ? shared(args.backend as WasmBackend, x) : library(args);
  };
}

const REPLACEMENTS: Record<string, (library: tf.KernelFunc) => tf.KernelFunc> = {
  Transpose: transposeKernel,
  Sum: sumKernel,
  Slice: sliceKernel,
  SplitV: splitVKernel,
  Identity: identityKernel,
  Cast: castKernel,
};

/** The library's wasm kernels, kept when ours are installed. */
const library = new Map<string, tf.KernelConfig>();

/**
 * Install (true) or remove (false) these kernels on the wasm backend. Returns the previous state.
 * Call after the wasm backend is registered (`initBackend` does); a no-op for other backends' kernels.
 */
export function useWasmKernels(on: boolean): boolean {
  const prev = library.size > 0;
  if (on === prev) return prev;
  for (const [name, replace] of Object.entries(REPLACEMENTS)) {
    if (on) {
      const k = tf.getKernel(name, "wasm");
      if (!k) continue;
      library.set(name, k);
      tf.unregisterKernel(name, "wasm");
      tf.registerKernel({ ...k, kernelFunc: replace(k.kernelFunc) });
    } else {
      const k = library.get(name);
      if (!k) continue;
      tf.unregisterKernel(name, "wasm");
      tf.registerKernel(k);
    }
  }
  if (!on) library.clear();
  return prev;
}

/** Whether these kernels are installed. */
export function wasmKernelsActive(): boolean {
  return library.size > 0;
}
