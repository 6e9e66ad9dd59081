/**
 * Key preconditioning (our deviation, opt-in: the `keyPrecond` extension, editorExtensions.ts). A rank-1 update
 * W' = W + k δᵀ moves every other input u' by (u'·k) δ: the key k decides how local the edit is.
 * MEND's key is the editor's ũ, which at identity init is the normalised input (u − μ)/σ: a
 * diagonal rescaling. ROME keys its edits with C⁻¹u instead, C = E[u uᵀ] over many inputs of the
 * layer, so that directions every prompt shares (for instance "about to name a language") weigh
 * little and the edit prompt's own directions weigh much. Here the editor's ũ is mapped to
 *
 *     key = (ũ ∘ σ) P,   P = s (C + λ s I)⁻¹,   s = tr(C) / d_in,
 *
 * with σ the normalisation's σ + 1e-7 (so at identity init key = (u − μ) P) and C measured once, on
 * the base model, at the answer position of the training prompts. s makes P the identity for an
 * isotropic C, so α keeps its scale; λ is a ridge relative to the mean eigenvalue.
 * Measured without an editor (experiments/key-whitening): a one-layer gradient step keyed
 * with C⁻¹u keeps edit success and paraphrases and moves locality from 0.93 to 0.98.
 */
import * as tf from "@tensorflow/tfjs";
import { ModelView } from "../model/paramsModel";
import { rowRequests } from "../mend/edit";
import { Factors } from "../mend/factor";
import { KeyTransform } from "../mend/hooks";
import { inputScale } from "../mend/stats";
import { lastPositionInputs } from "../model/layerInputs";

/**
 * E[u uᵀ] of each named weight's input at the last prompt position (the position that predicts the
 * answer), over `prompts`. @returns name -> row-major [d_in · d_in] (float64)
 */
export function keySecondMoments(model: ModelView, names: readonly string[], prompts: readonly string[], batchSize = 256): Record<string, Float64Array> {
  if (prompts.length === 0) throw new Error("keySecondMoments: no prompts");
  const { inputs } = lastPositionInputs(model, names, prompts, batchSize); // name -> [n, d_in]
  const out = Object.fromEntries(names.map((n) => {
    const sum = tf.tidy(() => tf.matMul(tf.transpose(inputs[n]), inputs[n])); // Σ u uᵀ
    const m = Float64Array.from(sum.dataSync(), (x) => x / prompts.length);
    sum.dispose();
    return [n, m];
  }));
  tf.dispose(Object.values(inputs));
  return out;
}

/**
 * P = s (C + λ s I)⁻¹ with s = tr(C)/d, by Cholesky (float64). @param C row-major [d · d], symmetric
 * positive semi-definite. @returns row-major [d · d] (symmetric)
 */
export function ridgeInverse(C: Float64Array, d: number, lam: number): Float64Array {
  if (C.length !== d * d) throw new Error(`ridgeInverse: C has ${C.length} entries, expected ${d}x${d}`);
  if (!(lam > 0)) throw new Error(`ridgeInverse: the ridge λ must be > 0, got ${lam}`);
  let tr = 0;
  for (let i = 0; i < d; i++) tr += C[i * d + i];
  const s = tr / d;
  if (!(s > 0) || !Number.isFinite(s)) throw new Error(`ridgeInverse: the second moment has trace ${tr}`);
  const A = Float64Array.from(C);
  for (let i = 0; i < d; i++) A[i * d + i] += lam * s;
  const P = spdInverse(A, d);
  for (let i = 0; i < P.length; i++) P[i] *= s;
  return P;
}

/** A⁻¹ of a symmetric positive definite A, row-major [d · d], by Cholesky (float64). */
function spdInverse(A: Float64Array, d: number): Float64Array {
  const L = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let v = A[i * d + j];
      for (let k = 0; k < j; k++) v -= L[i * d + k] * L[j * d + k];
      if (i === j && !(v > 0)) throw new Error(`spdInverse: the matrix is not positive definite (pivot ${i}: ${v})`);
      L[i * d + j] = i === j ? Math.sqrt(v) : v / L[j * d + j];
    }
  }
  const inv = new Float64Array(d * d);
  const y = new Float64Array(d);
  for (let c = 0; c < d; c++) {
    for (let i = 0; i < d; i++) { // L y = e_c
      let v = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) v -= L[i * d + k] * y[k];
      y[i] = v / L[i * d + i];
    }
    for (let i = d - 1; i >= 0; i--) { // Lᵀ x = y, x is column c
      let v = y[i];
      for (let k = i + 1; k < d; k++) v -= L[k * d + i] * inv[k * d + c];
      inv[i * d + c] = v / L[i * d + i];
    }
  }
  return inv;
}

/**
 * Batch key decorrelation (our deviation, opt-in: the `batchPrecond` extension β, on top of
 * key preconditioning). MEND sums the k edits of a call, so request j's update reaches request i's
 * input v through the cross term (v · key_j) δ̃_j: same-relation edits share much of their input
 * and overwrite each other. MEMIT solves a batch with (C + K Kᵀ)⁻¹, the batch's own keys entering
 * the covariance. Here each key κ = s P (s a row of S = ũ ∘ σ) is corrected, within the span of the
 * call's target inputs (v̂ normalised to v̂ᵀ P v̂ = 1, W = V̂ P, G = W V̂ᵀ), so that its responses on
 * the *other* requests' inputs vanish (up to the ridge 1/β) and those on its own request's inputs
 * stay:
 *
 *     key = κ − ((κ V̂ᵀ) ∘ O) (I/β + G)⁻¹ W,   O[row, j] = 1 if input j belongs to another request.
 *
 * Then V̂ keyᵀ = r − G (I/β + G)⁻¹ (r ∘ o) → r ∘ (1 − o) as β → ∞. A call of one request is left as it
 * is (O = 0). V̂, G and the n × n inverse are constants (MEND's u is detached): the gradient flows
 * through S only.
 * @param S [m, d] the call's keys before P, (ũ ∘ σ) @param V [n, d] the call's inputs at its
 * target rows (and preserved inputs, preserve.ts) @param P [d, d], or null for the identity
 * @param beta β, one for all inputs or one per input @param other [m, n] 0/1: the input belongs to
 * another request (or is preserved): the row's response on it is removed @returns keys [m, d]
 */
export function decorrelatedKeys(S: tf.Tensor2D, V: tf.Tensor2D, P: tf.Tensor2D | null, beta: number | readonly number[], other: tf.Tensor2D): tf.Tensor2D {
  const n = V.shape[0];
  const betas = typeof beta === "number" ? new Array<number>(n).fill(beta) : beta;
  if (betas.length !== n) throw new Error(`decorrelatedKeys: ${betas.length} ridges for ${n} inputs`);
  for (const b of betas) if (!(b > 0)) throw new Error(`decorrelatedKeys: β must be > 0, got ${b}`);
  if (other.shape[0] !== S.shape[0] || other.shape[1] !== n) throw new Error(`decorrelatedKeys: the mask is [${other.shape}], expected [${S.shape[0]}, ${n}]`);
  if (n === 0) return P ? tf.matMul(S, P) : tf.clone(S);
  return tf.tidy(() => {
    const VP = P ? tf.matMul(V, P) : V; // [n, d]
    const r = tf.reshape(tf.rsqrt(tf.sum(tf.mul(V, VP), 1)), [n, 1]); // 1/√(vᵀPv)
    const W = tf.mul(VP, r); // V̂ P
    const gram = tf.matMul(W, tf.transpose(tf.mul(V, r))); // G = W V̂ᵀ [n, n]
    const M = Float64Array.from(gram.dataSync());
    for (let i = 0; i < n; i++) M[i * n + i] += 1 / betas[i];
    const Minv = tf.tensor2d(Float32Array.from(spdInverse(M, n)), [n, n]);
    const cross = tf.mul(tf.matMul(S, tf.transpose(W)), other); // κ V̂ᵀ = S P V̂ᵀ = S Wᵀ (P symmetric), other requests only
    return tf.sub(P ? tf.matMul(S, P) : S, tf.matMul(tf.matMul(cross, Minv), W)) as tf.Tensor2D;
  });
}

/** The preconditioners P of `names` for ridge λ, measured on `prompts`. Caller owns the tensors. */
export function keyPreconditioners(model: ModelView, names: readonly string[], prompts: readonly string[], lam: number): Record<string, tf.Tensor2D> {
  const moments = keySecondMoments(model, names, prompts);
  return Object.fromEntries(names.map((n) => {
    const d = model.params[n].shape[0];
    return [n, tf.tensor2d(Float32Array.from(ridgeInverse(moments[n], d, lam)), [d, d])];
  }));
}

/**
 * Inputs an edit call must not move (preserve.ts), per edited weight [n, d_in], and the constraint's
 * β: `inputs` for every call, or `byCall` (call -> inputs) when one batch holds several calls.
 */
export interface PreservedInputs {
  inputs?: Record<string, tf.Tensor2D>;
  byCall?: ReadonlyMap<number, Record<string, tf.Tensor2D>>;
  beta: number;
}

export interface KeyOptions {
  /** P per edited weight [d_in, d_in] (key preconditioning); absent = the identity. */
  precond?: Readonly<Record<string, tf.Tensor2D>>;
  /** β of batch key decorrelation; absent = off. */
  batchBeta?: number;
  /** Inputs whose response every key loses (edit-time preservation, preserve.ts). */
  preserved?: PreservedInputs;
}

const targetSets = new WeakMap<Factors, ReadonlySet<number>>();
function targetSet(f: Factors): ReadonlySet<number> {
  let s = targetSets.get(f);
  if (!s) targetSets.set(f, (s = new Set(f.targetRows)));
  return s;
}

/**
 * The key transform (mend/hooks.ts) of key preconditioning, batch decorrelation and preservation:
 * key = (ũ ∘ σ) P, then, with `batchBeta` or `preserved`, each call's keys corrected by
 * `decorrelatedKeys`. σ is the editor's normalisation scale (so P applies in the input's own units).
 */
export function preconditionedKeys(o: KeyOptions): KeyTransform {
  return (uTilde, { name, stats, factors, rowCall }) => {
    const P = o.precond?.[name] ?? null;
    const scaled = P && stats ? (tf.mul(uTilde, inputScale(stats)) as tf.Tensor2D) : uTilde;
    const pr = o.preserved;
    const of = pr && ((call: number) => (pr.byCall ? pr.byCall.get(call)?.[name] : pr.inputs?.[name]));
    if (o.batchBeta || pr) return callKeys(scaled, factors, name, targetSet(factors), P, o.batchBeta, of && { of, beta: pr.beta }, rowCall);
    return P ? tf.matMul(scaled, P) : scaled;
  };
}

/**
 * The keys of every edit call in `factors` (`decorrelatedKeys`), rows in their original
 * order: with `batchBeta`, decorrelated from the call's other requests' target inputs; with
 * `preserved`, with no response on the preserved inputs; responses on the row's own request's
 * target inputs kept. A request is a batch row (flattened row / T); a call, `rowCall` of a row.
 * `target`: the factors' target rows.
 */
function callKeys(scaled: tf.Tensor2D, factors: Factors, name: string, target: ReadonlySet<number>, P: tf.Tensor2D | null, batchBeta: number | undefined, preserved: { of: (call: number) => tf.Tensor2D | undefined; beta: number } | undefined, rowCall?: (row: number) => number): tf.Tensor2D {
  const rows = factors.rows[name];
  const request = rowRequests(factors, name);
  const calls = new Map<number, number[]>(); // call -> kept-row positions, in order of first appearance
  rows.forEach((r, i) => {
    const c = rowCall ? rowCall(r) : 0;
    if (!calls.has(c)) calls.set(c, []);
    calls.get(c)!.push(i);
  });
  const order = [...calls.values()].flat();
  const parts = [...calls.entries()].map(([call, pos]) => {
    const kept = preserved?.of(call);
    const nKeep = kept ? kept.shape[0] : 0;
    const inputs = pos.filter((i) => target.has(rows[i]));
    const betas = [...inputs.map(() => batchBeta ?? preserved!.beta), ...new Array<number>(nKeep).fill(preserved?.beta ?? 1)];
    const other = tf.tensor2d(pos.flatMap((i) => [...inputs.map((j) => (batchBeta && request[i] !== request[j] ? 1 : 0)), ...new Array<number>(nKeep).fill(1)]), [pos.length, inputs.length + nKeep]);
    const S = selectRows(scaled, pos);
    const own = tf.gather(factors.u[name], tf.tensor1d(inputs, "int32")) as tf.Tensor2D;
    const V = nKeep ? (tf.concat([own, kept!]) as tf.Tensor2D) : own;
    return decorrelatedKeys(S, V, P, betas, other);
  });
  const keys = parts.length === 1 ? parts[0] : (tf.concat(parts) as tf.Tensor2D);
  if (order.every((p, i) => p === i)) return keys;
  const inverse = new Array<number>(order.length);
  order.forEach((p, i) => (inverse[p] = i));
  return selectRows(keys, inverse);
}

/**
 * Rows `pos` of x [N, d], differentiably: a slice when they are consecutive, else a one-hot matMul
 * (tf.gather's gradient needs UnsortedSegmentSum, which the wasm backend lacks). @returns [pos.length, d]
 */
function selectRows(x: tf.Tensor2D, pos: readonly number[]): tf.Tensor2D {
  if (pos.every((p, i) => p === pos[0] + i)) return tf.slice(x, [pos[0], 0], [pos.length, x.shape[1]]);
  const N = x.shape[0];
  const onehot = new Float32Array(pos.length * N);
  pos.forEach((p, i) => (onehot[i * N + p] = 1));
  return tf.matMul(tf.tensor2d(onehot, [pos.length, N]), x);
}

