/**
 * GPT-2 as a pure function of a flat parameter record (Radford et al. 2019; HF `GPT2Model`).
 *
 * Pre-LayerNorm blocks, learned positions, tanh GELU, causal self-attention, output head tied to
 * `wte`. Parameters use Hugging Face `GPT2Model` names in Conv1D layout [in, out], so every linear
 * layer is `x @ W + b` with no transpose (the fast path on wasm).
 *
 * What MEND needs from the forward (mend-spec §2, §10):
 *  - `replace`: substitute any named parameter (the edited weights W' = W + αG);
 *  - `capture`: return the input u of chosen linear layers, one row per token;
 *  - `probes`: zero tensors added to those layers' outputs, so that dL/d(probe) = δ = dL/dz.
 *
 * Shapes: B batch, T time, C = n_embd, H heads, hs = C/H, V vocab, N = B*T token rows.
 */
import * as crypto from "crypto";
import * as tf from "@tensorflow/tfjs";
import { GPT2Config } from "./config";

export type Params = Record<string, tf.Tensor>;

/** The shape of every tensor of `params`, by name. */
export function shapesOf(params: Readonly<Params>): Record<string, number[]> {
  return Object.fromEntries(Object.entries(params).map(([n, t]) => [n, t.shape]));
}

/** Names of all parameters of a GPT-2 with this config, in HF order. */
export function paramShapes(c: GPT2Config): Record<string, number[]> {
  const C = c.n_embd;
  const s: Record<string, number[]> = { "wte.weight": [c.vocab_size, C], "wpe.weight": [c.n_positions, C] };
  for (let i = 0; i < c.n_layer; i++) {
    const p = `h.${i}.`;
    s[p + "ln_1.weight"] = [C];
    s[p + "ln_1.bias"] = [C];
    s[p + "attn.c_attn.weight"] = [C, 3 * C];
    s[p + "attn.c_attn.bias"] = [3 * C];
    s[p + "attn.c_proj.weight"] = [C, C];
    s[p + "attn.c_proj.bias"] = [C];
    s[p + "ln_2.weight"] = [C];
    s[p + "ln_2.bias"] = [C];
    s[p + "mlp.c_fc.weight"] = [C, 4 * C];
    s[p + "mlp.c_fc.bias"] = [4 * C];
    s[p + "mlp.c_proj.weight"] = [4 * C, C];
    s[p + "mlp.c_proj.bias"] = [C];
  }
  s["ln_f.weight"] = [C];
  s["ln_f.bias"] = [C];
  return s;
}

/**
 * GPT-2 initialisation (HF `_init_weights`): normal(0, initializer_range) for embeddings and
 * linear weights, zeros for biases, ones for LayerNorm gains, and the residual projections
 * (`*.c_proj.weight`) scaled by 1/sqrt(2 n_layer). Deterministic for a given seed.
 * The caller owns the returned tensors (dispose with `disposeParams`).
 */
export function initGPT(c: GPT2Config, seed: number): Params {
  const out: Params = {};
  let k = 0;
  for (const [name, shape] of Object.entries(paramShapes(c))) {
    k++;
    if (name.endsWith(".bias")) out[name] = tf.zeros(shape);
    else if (name.startsWith("ln_") || name.includes(".ln_")) out[name] = tf.ones(shape);
    else {
      const std = name.endsWith("c_proj.weight") ? c.initializer_range / Math.sqrt(2 * c.n_layer) : c.initializer_range;
      out[name] = tf.randomNormal(shape, 0, std, "float32", seed * 1000 + k);
    }
  }
  return out;
}

export function disposeParams(p: Params): void {
  releaseTransposes(Object.values(p));
  for (const t of Object.values(p)) t.dispose();
}

export interface ForwardOptions {
  /** [B, T], 1 for a token and 0 for padding; padded keys get no attention. Default: all ones. */
  attentionMask?: tf.Tensor2D;
  /** Parameters to use instead of the ones in `params` (e.g. edited weights). */
  replace?: Readonly<Params>;
  /** Linear weight names (e.g. `h.3.mlp.c_fc.weight`) whose input u to return, as [N, d_in]. */
  capture?: readonly string[];
  /** Linear weight name -> [N, d_out] tensor added to that layer's output (zeros: δ probes). */
  probes?: Readonly<Record<string, tf.Tensor>>;
  /**
   * Low-rank weight updates without forming W': name -> {left [M, d_in], right [M, d_out], mask [N, M]}
   * adds ((x leftᵀ) ⊙ mask) right to the layer output, i.e. x (W + leftᵀ right) for the rows the
   * mask allows. With mask[r, j] = 1 when token row r and update row j belong to the same example,
   * one forward runs many examples, each with its own edited weight (used by meta-training).
   */
  lowRank?: Readonly<Record<string, LowRankTerm>>;
  /**
   * Linear weight name -> an adapter of that layer: called with the layer's input x [N, d_in] and
   * output z [N, d_out], it returns the output to use [N, d_out] (GRACE's codebook, lifelong/grace.ts).
   */
  adapters?: Readonly<Record<string, (x: tf.Tensor2D, z: tf.Tensor2D) => tf.Tensor2D>>;
  /**
   * Read or replace hidden states [N, C] where they form (causal tracing, src/eval/causalTrace.ts):
   * "embed" (token + position embeddings), "h.<i>.attn" and "h.<i>.mlp" (a block's attention and MLP
   * outputs, before they join the residual stream) and "h.<i>" (the residual stream after block i).
   * The returned tensor is used in place of `x`.
   */
  intervene?: (site: HiddenSite, x: tf.Tensor2D) => tf.Tensor2D;
}

/** Where `ForwardOptions.intervene` sees the hidden states. */
export type HiddenSite = "embed" | `h.${number}` | `h.${number}.attn` | `h.${number}.mlp`;

export interface LowRankTerm {
  /** [M, d_in] */
  left: tf.Tensor2D;
  /** [M, d_out] */
  right: tf.Tensor2D;
  /** [N, M]; omitted = every row gets every update row */
  mask?: tf.Tensor2D;
}

export interface ForwardResult {
  /** [B, T, V] */
  logits: tf.Tensor3D;
  /** Captured layer inputs u, [N, d_in], rows in (batch, time) order. */
  inputs: Record<string, tf.Tensor2D>;
}

/**
 * Run GPT-2 on token ids [B, T]. Pure: reads `params`/`opts.replace`, allocates only results and
 * intermediates. Call it inside `tf.tidy` (or a gradient closure); the caller owns the results.
 */
export function gptForward(params: Readonly<Params>, c: GPT2Config, inputIds: tf.Tensor2D, opts: ForwardOptions = {}): ForwardResult {
  tf.util.assert(inputIds.rank === 2, () => `gptForward: inputIds must be [B, T], got rank ${inputIds.rank}`);
  const [B, T] = inputIds.shape;
  if (T > c.n_positions) throw new Error(`sequence of ${T} tokens is longer than the model's context (n_positions = ${c.n_positions})`);
  const C = c.n_embd;
  const H = c.n_head;
  const hs = C / H;
  const N = B * T;
  const P = (name: string): tf.Tensor => {
    const t = opts.replace?.[name] ?? params[name];
    if (!t) throw new Error(`missing parameter "${name}"`);
    if (t.isDisposed) throw new Error(`parameter "${name}" was disposed: this model (or edit) has been freed; load it again (or redo the edit) before using it`);
    return t;
  };
  const capture = new Set(opts.capture ?? []);
  const inputs: Record<string, tf.Tensor2D> = {};

  /** x [N, d_in] @ W [d_in, d_out] + b, with optional capture of x and a probe on the output. */
  const linear = (x: tf.Tensor2D, prefix: string): tf.Tensor2D => {
    const wName = prefix + ".weight";
    if (capture.has(wName)) inputs[wName] = x;
    const w = P(wName) as tf.Tensor2D;
    // A large base weight (not an edited copy, not a Variable) takes a custom op with its transpose
    // cached; read from `params` it is frozen (no weight gradient is formed), passed through
    // `replace` a gradient may be asked of it (tf.grads w.r.t. the base weights themselves).
    const base = w === params[wName] && !(w instanceof tf.Variable) && w.size >= CACHE_MIN_ELEMENTS;
    const product = !base ? tf.matMul(x, w) : opts.replace?.[wName] ? baseLinear(x, w) : frozenLinear(x, w);
    let z = tf.add(product, P(prefix + ".bias")) as tf.Tensor2D;
    const lr = opts.lowRank?.[wName];
    if (lr) {
      let coef = tf.matMul(x, tf.transpose(lr.left)) as tf.Tensor2D; // [N, M] (explicit transpose: fast path)
      if (lr.mask) coef = tf.mul(coef, lr.mask) as tf.Tensor2D;
      z = tf.add(z, tf.matMul(coef, lr.right)) as tf.Tensor2D;
    }
    const probe = opts.probes?.[wName];
    if (probe) {
      tf.util.assert(probe.shape[0] === N && probe.shape[1] === z.shape[1], () => `probe for ${wName} must be [${N}, ${z.shape[1]}], got [${probe.shape}]`);
      z = tf.add(z, probe) as tf.Tensor2D;
    }
    const adapter = opts.adapters?.[wName];
    return adapter ? adapter(x, z) : z;
  };
  const layerNorm = (x: tf.Tensor2D, prefix: string): tf.Tensor2D => {
    const { mean, variance } = tf.moments(x, -1, true);
    const xhat = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, c.layer_norm_epsilon)));
    return tf.add(tf.mul(xhat, P(prefix + ".weight")), P(prefix + ".bias")) as tf.Tensor2D;
  };

  // Embeddings: rows of wte. A trained wte gets its gradient by a scatter-add (trainedEmbedding); a
  // frozen one (editing, scoring) none (frozenEmbedding).
  const ids = tf.reshape(inputIds, [N]) as tf.Tensor1D;
  const wte = P("wte.weight") as tf.Tensor2D;
  const trained = opts.replace?.["wte.weight"] !== undefined || wte instanceof tf.Variable;
  const tok = trained ? trainedEmbedding(wte, ids) : frozenEmbedding(wte, ids); // [N, C]
  const pos = tf.slice(P("wpe.weight"), [0, 0], [T, C]); // [T, C], broadcast over the batch (no tiled copy)
  const at = (site: HiddenSite, h: tf.Tensor2D): tf.Tensor2D => (opts.intervene ? opts.intervene(site, h) : h);
  let x = at("embed", tf.reshape(tf.add(tf.reshape(tok, [B, T, C]), pos), [N, C]) as tf.Tensor2D); // [N, C]

  // Additive attention bias [B, 1, T, T]: causal, and padded keys masked out.
  const causal = tf.linalg.bandPart(tf.ones([T, T]), -1, 0); // [T, T] lower triangle
  const keyMask = opts.attentionMask ? tf.reshape(tf.cast(opts.attentionMask, "float32"), [B, 1, 1, T]) : tf.ones([B, 1, 1, T]);
  const allowed = tf.mul(tf.reshape(causal, [1, 1, T, T]), keyMask);
  const bias = tf.mul(tf.sub(1, allowed), -1e9); // [B, 1, T, T]

  const heads = (m: tf.Tensor2D): tf.Tensor4D => tf.transpose(tf.reshape(m, [B, T, H, hs]), [0, 2, 1, 3]); // [B, H, T, hs]
  const block = (i: number, x: tf.Tensor2D): tf.Tensor2D => {
    const p = `h.${i}.`;
    // Attention: softmax(q kᵀ / sqrt(hs) + bias) v
    const qkv = linear(layerNorm(x, p + "ln_1"), p + "attn.c_attn"); // [N, 3C]
    const [q, k, v] = tf.split(qkv, 3, 1) as tf.Tensor2D[];
    const kT = tf.transpose(tf.reshape(k, [B, T, H, hs]), [0, 2, 3, 1]); // [B, H, hs, T] in one transpose (no matMul flags)
    const att = tf.softmax(tf.add(tf.mul(tf.matMul(heads(q), kT), 1 / Math.sqrt(hs)), bias)); // [B, H, T, T]
    const y = tf.reshape(tf.transpose(tf.matMul(att, heads(v)), [0, 2, 1, 3]), [N, C]) as tf.Tensor2D;
    x = tf.add(x, at(`h.${i}.attn`, linear(y, p + "attn.c_proj"))) as tf.Tensor2D;
    // MLP: c_proj(gelu(c_fc(ln_2(x)))) -- the two weights MEND edits.
    const hmid = activation(linear(layerNorm(x, p + "ln_2"), p + "mlp.c_fc")); // [N, 4C]
    return at(`h.${i}`, tf.add(x, at(`h.${i}.mlp`, linear(hmid, p + "mlp.c_proj"))) as tf.Tensor2D);
  };
  // Each block in a tidy of its own: its intermediates are freed when it ends (those a backward pass
  // needs are kept by the gradient tape), so a forward peaks at one block's intermediates, not all of
  // them (one forward of 64 x 14 tokens on the facts-world model grew wasm's heap by 134 MB, now by
  // 25 MB; docs/benchmarks.md). Not with callbacks (`intervene`, `adapters`), which may keep the
  // tensors they are shown.
  const tidyBlocks = !opts.intervene && !opts.adapters;
  for (let i = 0; i < c.n_layer; i++) {
    if (!tidyBlocks) {
      x = block(i, x);
      continue;
    }
    const before = new Set(Object.keys(inputs));
    const r = tf.tidy(() => {
      const out = block(i, x);
      return { out, captured: Object.fromEntries(Object.entries(inputs).filter(([n]) => !before.has(n))) };
    });
    x = r.out;
    Object.assign(inputs, r.captured);
  }
  const hf = layerNorm(x, "ln_f");
  const head = trained ? tf.matMul(hf, tf.transpose(wte)) : frozenHead(hf, wte); // tied head
  const logits = tf.reshape(head, [B, T, c.vocab_size]) as tf.Tensor3D;
  for (const name of capture) if (!inputs[name]) throw new Error(`capture: "${name}" is not a linear weight of this model`);
  return { logits, inputs };
}

/**
 * Transposed copies of a model's large base weights (GPT-2's wte [50257, C], and its MLP and attention
 * weights of ≥ 2^20 elements), made on first use in a backward pass and freed by `disposeParams` (or
 * when found with a disposed weight). On wasm, dy @ Wᵀ with Wᵀ at hand is 10-25x faster than a
 * transpose per pass for the few rows of an edit. The facts world's small model transposes on the fly.
 */
const transposeCache = new Map<tf.Tensor, tf.Tensor2D>();
const CACHE_MIN_ELEMENTS = 2 ** 20;

function cachedTranspose(w: tf.Tensor2D): tf.Tensor2D {
  for (const [k, v] of transposeCache) if (k.isDisposed) (v.dispose(), transposeCache.delete(k));
  if (w.size < CACHE_MIN_ELEMENTS) return tf.transpose(w);
  let t = transposeCache.get(w);
  if (!t) {
    t = tf.keep(tf.transpose(w));
    transposeCache.set(w, t);
  }
  return t;
}

/** Free the cached transposes of these weights, if any. */
export function releaseTransposes(ws: readonly tf.Tensor[]): void {
  for (const w of ws) {
    const t = transposeCache.get(w);
    if (t) (t.dispose(), transposeCache.delete(w));
  }
}

/** x @ W for a large base weight: dx = dy @ (cached Wᵀ), dW = xᵀ @ dy. */
function baseLinear(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  type Grad = Parameters<typeof tf.customGrad>[0];
  // The gradient reads `w` (the base weight itself, whose transpose is cached) and the saved input, never the op's own copies.
  const f = tf.customGrad(((a: tf.Tensor2D, b: tf.Tensor2D, save: (ts: tf.Tensor[]) => void) => {
    save([a]);
    return { value: tf.matMul(a, b), gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => [tf.matMul(dy, cachedTranspose(w)), tf.matMul(tf.transpose(saved[0]), dy)] };
  }) as unknown as Grad);
  return f(x, w) as tf.Tensor2D;
}

/** x @ W for a large frozen base weight: only dx = dy @ (cached Wᵀ); no weight gradient is formed. */
function frozenLinear(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  type Grad = Parameters<typeof tf.customGrad>[0];
  const f = tf.customGrad(((a: tf.Tensor2D) => ({ value: tf.matMul(a, w), gradFunc: (dy: tf.Tensor2D) => tf.matMul(dy, cachedTranspose(w)) })) as unknown as Grad);
  return f(x) as tf.Tensor2D;
}

/**
 * The tied output head h [N, C] @ wteᵀ for a wte that is not being trained: the gradient reaches h
 * only (dh = dy @ wte, a plain product). tfjs' own matMul gradient would also form the unused
 * [V, C] gradient of wte, 154 MB per pass for GPT-2.
 */
function frozenHead(h: tf.Tensor2D, wte: tf.Tensor2D): tf.Tensor2D {
  const wteT = cachedTranspose(wte);
  type Grad = Parameters<typeof tf.customGrad>[0];
  const f = tf.customGrad(((x: tf.Tensor2D) => ({ value: tf.matMul(x, wteT), gradFunc: (dy: tf.Tensor2D) => tf.matMul(dy, wte) })) as unknown as Grad);
  return f(h) as tf.Tensor2D;
}

/**
 * Rows of a frozen wte for token ids [N] -> [N, C], as one custom op: under a gradient tape tfjs'
 * gather would save (copy) all of wte for its backward, 154 MB per pass for GPT-2; nothing flows
 * back to integer ids.
 */
function frozenEmbedding(wte: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  type Grad = Parameters<typeof tf.customGrad>[0];
  const f = tf.customGrad(((i: tf.Tensor1D) => ({ value: tf.gather(wte, i), gradFunc: () => tf.zerosLike(i) })) as unknown as Grad);
  return f(ids) as tf.Tensor2D;
}

/**
 * Rows of a trained wte for token ids [N] -> [N, C], with d wte = the rows of dy added into the rows
 * of their tokens (a scatter-add; tfjs' gather has no gradient on wasm: UnsortedSegmentSum is missing).
 * This is what one-hot(ids) @ wte computed before, bit for bit (the one-hot product adds exact zeros
 * and each token's rows in the same order; tested), without the [N, V] one-hot and its two products
 * ([896, 767] x [767, 128] each way for the facts-world model's 64 x 14 batch).
 */
export function trainedEmbedding(wte: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  type Grad = Parameters<typeof tf.customGrad>[0];
  const f = tf.customGrad(((w: tf.Tensor2D) => ({
    value: tf.gather(w, ids),
    gradFunc: (dy: tf.Tensor2D) => tf.scatterND(tf.reshape(ids, [ids.shape[0], 1]), dy, w.shape),
  })) as unknown as Grad);
  return f(wte) as tf.Tensor2D;
}

/**
 * GPT-2's tanh approximation of GELU (HF `gelu_new`; tfjs has no gelu op):
 *   0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))  =  x σ(2√(2/π) (x + 0.044715 x³)),
 * since 1 + tanh(z) = 2σ(2z). Written with the sigmoid: wasm's sigmoid is vectorised where its tanh
 * is a scalar loop (one [896, 512] GELU forward+backward 5.5 ms against 25 ms), in 6 kernels instead
 * of 9. The two forms differ by float32 rounding only (≤ 5e-7 on [-8, 8]: test/gpt.test.ts).
 */
export function gelu(x: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(x, tf.sigmoid(tf.mul(x, tf.add(GELU_K1, tf.mul(GELU_K3, tf.square(x)))))) as tf.Tensor2D;
}
const GELU_K1 = 2 * Math.sqrt(2 / Math.PI); // the coefficient of x in 2z
const GELU_K3 = GELU_K1 * 0.044715; // the coefficient of x³ in 2z

/**
 * The GELU `gptForward` uses: the sigmoid form, or with `MEND_GELU=tanh` the tanh form, in which the
 * shipped checkpoints and results were made (docs/files-and-runs.md: that setting reproduces them bit
 * for bit; experiments/gelu-form measures how far the default moves them).
 */
let activation = geluFromEnv();

function geluFromEnv(): (x: tf.Tensor2D) => tf.Tensor2D {
  const form = typeof process === "undefined" ? undefined : process.env?.MEND_GELU;
  if (form === undefined || form === "" || form === "sigmoid") return gelu;
  if (form === "tanh") return geluTanh;
  throw new Error(`MEND_GELU="${form}" is not a form of GELU: use sigmoid (the default) or tanh (the form the shipped checkpoints were made with)`);
}

/**
 * Which form of GELU `gptForward` uses from now on: "sigmoid" (the default) or "tanh" (GPT-2's
 * written form). Returns the previous form.
 */
export function useGeluForm(form: "sigmoid" | "tanh"): "sigmoid" | "tanh" {
  const prev = activation === gelu ? "sigmoid" : "tanh";
  activation = form === "sigmoid" ? gelu : geluTanh;
  return prev;
}

/** The same GELU in the tanh form GPT-2's code writes: `MEND_GELU=tanh`, and the measure of the sigmoid form. */
export function geluTanh(x: tf.Tensor2D): tf.Tensor2D {
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(x, tf.mul(x, x)))));
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner))) as tf.Tensor2D;
}

/**
 * SHA-256 over every parameter (name, shape and float32 data, in name order): an editor records
 * the fingerprint of the base model it was trained for. Computed once per set of tensors: a tensor
 * that is not a Variable never changes its data, so the result is kept, keyed by the tensors' ids
 * (an editor saved at every validation step does not re-hash a GPT-2).
 */
export function paramsFingerprint(p: Readonly<Params>): string {
  const names = Object.keys(p).sort();
  const frozen = names.every((n) => !(p[n] instanceof tf.Variable));
  const key = frozen ? names.map((n) => `${n}#${p[n].id}`).join(",") : null;
  const known = key === null ? undefined : fingerprints.get(key);
  if (known) return known;
  const h = crypto.createHash("sha256");
  for (const name of names) {
    const t = p[name];
    const d = t.dataSync() as Float32Array;
    h.update(`${name}:${t.shape.join("x")}:`);
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  const fp = h.digest("hex");
  if (key !== null) {
    if (fingerprints.size >= 16) fingerprints.delete(fingerprints.keys().next().value!); // a few models at a time
    fingerprints.set(key, fp);
  }
  return fp;
}
const fingerprints = new Map<string, string>();

/** Count of scalars in a parameter record. */
export function countParams(p: Readonly<Params>): number {
  return Object.values(p).reduce((s, t) => s + t.size, 0);
}
