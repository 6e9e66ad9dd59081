/**
 * The MEND editor network g_φ ("GradientTransform", MEND §3.1, Eq. 3; mend-spec §3).
 *
 * One network per distinct edited-weight shape (d_in, d_out), shared by the layers of that shape;
 * each layer ("mode") has its own FiLM scale and shift. Input z = concat(ū, δ̄) ∈ R^D, D = d_in + d_out
 * (u first). Two low-rank residual layers (n_hidden = 1, as the official IDMLP):
 *
 *     pre = (z Vᵀ Uᵀ + b) ⊙ s_mode + o_mode        (U ∈ R^{D×r}, V ∈ R^{r×D}, r = min(rank, D))
 *     z  ← z + max(pre, 0)                          (init "id": residual; gradient 1 at 0)
 *
 * then split back into ũ (first d_in) and δ̃ (last d_out). The pseudo-gradient is ∇̃W = Σ_i ũ_i δ̃_iᵀ.
 *
 * Storage: we keep the factors in row-vector layout so the forward is two plain matMuls,
 * `V` as [D, r] (= Vᵀ) and `U` as [r, D] (= Uᵀ). Init "id" (official): U = 0, V ~ N(0, 1), b = 0,
 * scale = 1, shift = 0, so g is exactly the identity at step 0. We use `tf.maximum(x, 0)`, whose
 * gradient at exactly 0 is 1 (tfjs' relu has 0 there, which would leave the editor dead at init).
 * Init "xavier" (the paper's "No ID init" ablation): U, V Xavier-uniform (gain √2 / 1), no residual.
 *
 * The structure follows the official `GradientTransform` options, which the paper's ablations
 * (Table 6) switch: `shared` (one net per weight shape with a mode per weight; false: one net per
 * weight) and `transform` ("joint": one net on concat(ū, δ̄), the official `combine`; "u": a net on ū
 * only, δ̃ = δ̄, the official `x_only`; "delta": a net on δ̄ only, `delta_only`; "smaller": a net on the
 * smaller of the two, `one_sided`). A net on one side has D = d_in or d_out.
 */
import * as tf from "@tensorflow/tfjs";
import { createStats, disposeStats, RunningStats } from "./stats";
import type { EditorHooks } from "./hooks";

export interface EditorConfig {
  /** Edited weights, in MEND's `inner_params` order (mode = index among weights of the same shape). */
  innerParams: string[];
  /** Rank of each D×D layer; the official default 1920 is capped at D. */
  rank: number;
  /** Hidden layers; the net has nHidden + 1 low-rank layers (official: 1 -> 2 layers). */
  nHidden: number;
  /** "id": identity init with residual (official); "xavier": the paper's "No ID init" ablation. */
  init: "id" | "xavier";
  /** Normalise u and δ with running statistics (official); false is the "No norm" ablation. */
  norm: boolean;
  /** Initial per-matrix edit learning rate α (official 1e-4). */
  editLr: number;
  /** One net per weight shape, a mode per weight (official default); false: one net per weight. Absent = true. */
  shared?: boolean;
  /** Which factors the nets transform (official `combine` / `x_only` / `delta_only` / `one_sided`). Absent = "joint". */
  transform?: EditorTransform;
}

/** What an editor's nets read and rewrite; the other side passes through normalised. */
export type EditorTransform = "joint" | "u" | "delta" | "smaller";
export const EDITOR_TRANSFORMS: readonly EditorTransform[] = ["joint", "u", "delta", "smaller"];

/** Names of MEND's default edited weights: the MLP c_fc and c_proj weights of the last `k` blocks. */
export function lastBlocksMlp(nLayer: number, k = 3): string[] {
  const names: string[] = [];
  for (let i = Math.max(0, nLayer - k); i < nLayer; i++) names.push(`h.${i}.mlp.c_fc.weight`, `h.${i}.mlp.c_proj.weight`);
  return names;
}

export const DEFAULT_EDITOR_CONFIG: Readonly<EditorConfig> = Object.freeze({
  innerParams: lastBlocksMlp(4),
  rank: 1920,
  nHidden: 1,
  init: "id",
  norm: true,
  editLr: 1e-4,
});

export interface EditorLayer {
  /** [D, r] (= Vᵀ) */
  V: tf.Variable;
  /** [r, D] (= Uᵀ) */
  U: tf.Variable;
  /** [D] */
  bias: tf.Variable;
  /** [nModes, D] */
  modeScale: tf.Variable;
  /** [nModes, D] */
  modeShift: tf.Variable;
}

export interface EditorNet {
  /** "d_in x d_out" (shared nets), or the weight's name */
  key: string;
  dIn: number;
  dOut: number;
  /** The factors this net reads and rewrites: both (concat(ū, δ̄)), ū only, or δ̄ only. */
  part: "joint" | "u" | "delta";
  /** Weight names sharing this net; the index is the mode. */
  modes: string[];
  layers: EditorLayer[];
  stats: RunningStats;
}

export interface Editor {
  config: EditorConfig;
  nets: Record<string, EditorNet>;
  /** Learned α per edited weight (scalar variables). */
  editLrs: Record<string, tf.Variable>;
  /**
   * Additions to the official algorithm (hooks.ts), if any: set by whoever built or loaded the
   * editor (src/extensions); absent = the official MEND editor.
   */
  hooks?: EditorHooks;
}

function shapeKey(dIn: number, dOut: number): string {
  return `${dIn}x${dOut}`;
}

let editorCounter = 0;

/** A trainable variable from an initial value; the initial tensor is released (the variable keeps its data). */
function owned(init: tf.Tensor, name: string): tf.Variable {
  const v = tf.variable(init, true, name);
  init.dispose();
  return v;
}

/** Xavier-uniform [fanIn, fanOut] with a gain; seeded. */
function xavier(shape: [number, number], gain: number, seed: number): tf.Tensor {
  const a = gain * Math.sqrt(6 / (shape[0] + shape[1]));
  return tf.randomUniform(shape, -a, a, "float32", seed);
}

/**
 * A fresh editor for weights of the given shapes ([d_in, d_out], Conv1D layout). Seeded.
 * The editor owns its variables: `disposeEditor` frees them.
 */
export function createEditor(config: EditorConfig, shapes: Readonly<Record<string, readonly number[]>>, seed: number): Editor {
  if (config.innerParams.length === 0) throw new Error("editor config: innerParams is empty");
  validateEditorConfig(config);
  const id = `editor${editorCounter++}`;
  const nets: Record<string, EditorNet> = {};
  for (const name of config.innerParams) {
    const s = Object.prototype.hasOwnProperty.call(shapes, name) ? shapes[name] : undefined; // never a prototype key ("__proto__")
    if (!s) {
      const blocks = Object.keys(shapes).filter((n) => /^h\.\d+\./.test(n)).map((n) => Number(n.split(".")[1]));
      throw new Error(`editor config: inner parameter "${name}" is not a weight of the base model${blocks.length ? ` (its blocks are h.0 to h.${Math.max(...blocks)})` : ""}`);
    }
    if (!Array.isArray(s) || s.length !== 2) throw new Error(`editor config: inner parameter "${name}" has shape [${s}], expected a 2-D weight`);
    const key = config.shared === false ? name : shapeKey(s[0], s[1]);
    nets[key] ??= { key, dIn: s[0], dOut: s[1], part: netPart(config.transform ?? "joint", s[0], s[1]), modes: [], layers: [], stats: createStats(s[0], s[1]) };
    nets[key].modes.push(name);
  }
  let k = 0;
  for (const net of Object.values(nets)) {
    const D = netWidth(net);
    const r = Math.min(config.rank, D);
    const M = net.modes.length;
    for (let l = 0; l < config.nHidden + 1; l++) {
      const p = `${id}/${net.key}.${l}.`;
      const s0 = seed * 1000 + 2 * k++ + 1; // never 0: tfjs' random ops treat seed 0 as "no seed" (Math.random)
      net.layers.push({
        V: owned(config.init === "id" ? tf.randomNormal([D, r], 0, 1, "float32", s0) : xavier([D, r], 1, s0), p + "V"),
        U: owned(config.init === "id" ? tf.zeros([r, D]) : xavier([r, D], Math.SQRT2, s0 + 1), p + "U"),
        bias: owned(tf.zeros([D]), p + "bias"),
        modeScale: owned(tf.ones([M, D]), p + "mode_scale"),
        modeShift: owned(tf.zeros([M, D]), p + "mode_shift"),
      });
    }
  }
  const editLrs: Record<string, tf.Variable> = {};
  for (const name of config.innerParams) editLrs[name] = owned(tf.scalar(config.editLr), `${id}/edit_lrs.${name}`);
  return { config, nets, editLrs };
}

/** The part a net of a weight [d_in, d_out] transforms ("smaller": the smaller side, as the official one_sided). */
function netPart(t: EditorTransform, dIn: number, dOut: number): EditorNet["part"] {
  if (t === "smaller") return dIn > dOut ? "delta" : "u";
  return t;
}

/** The width D of a net's input: d_in + d_out, d_in or d_out. */
export function netWidth(net: Pick<EditorNet, "part" | "dIn" | "dOut">): number {
  return net.part === "joint" ? net.dIn + net.dOut : net.part === "u" ? net.dIn : net.dOut;
}

/** Throws on a config the editor cannot be built from, naming the key. */
export function validateEditorConfig(config: EditorConfig): void {
  if (!config || typeof config !== "object" || Array.isArray(config)) throw new Error(`editor config: expected an object, got ${JSON.stringify(config)}`);
  if (!Array.isArray(config.innerParams) || config.innerParams.length === 0) throw new Error("editor config: innerParams is empty");
  const bad = config.innerParams.find((n) => typeof n !== "string" || n === "");
  if (bad !== undefined) throw new Error(`editor config: innerParams must be weight names, got ${JSON.stringify(bad)}`);
  if (!Number.isSafeInteger(config.rank) || config.rank < 1) throw new Error(`editor config: rank must be a positive integer, got ${config.rank}`);
  if (!Number.isSafeInteger(config.nHidden) || config.nHidden < 0) throw new Error(`editor config: nHidden must be a non-negative integer, got ${config.nHidden}`);
  if (config.init !== "id" && config.init !== "xavier") throw new Error(`editor config: init must be "id" or "xavier", got ${JSON.stringify(config.init)}`);
  if (typeof config.norm !== "boolean") throw new Error(`editor config: norm must be true or false, got ${JSON.stringify(config.norm)}`);
  if (!(Number.isFinite(config.editLr) && config.editLr > 0)) throw new Error(`editor config: editLr must be a positive number, got ${config.editLr}`);
  if (config.shared !== undefined && typeof config.shared !== "boolean") throw new Error(`editor config: shared must be true or false, got ${JSON.stringify(config.shared)}`);
  if (config.transform !== undefined && !EDITOR_TRANSFORMS.includes(config.transform)) throw new Error(`editor config: transform must be one of ${EDITOR_TRANSFORMS.join(", ")}, got ${JSON.stringify(config.transform)}`);
  const known = new Set(["innerParams", "rank", "nHidden", "init", "norm", "editLr", "shared", "transform"]);
  const extra = Object.keys(config).filter((k) => !known.has(k));
  if (extra.length) throw new Error(`editor config: unknown key(s) ${extra.join(", ")} (the official keys are ${[...known].join(", ")}; additions are hooks, see src/mend/hooks.ts)`);
}

export function disposeEditor(e: Editor): void {
  for (const net of Object.values(e.nets)) {
    for (const l of net.layers) tf.dispose([l.V, l.U, l.bias, l.modeScale, l.modeShift]);
    disposeStats(net.stats);
  }
  tf.dispose(Object.values(e.editLrs));
  e.hooks?.dispose?.();
}

/** Throws when the editor's variables were freed (`disposeEditor`), with a message that says so. */
export function assertLive(e: Editor): void {
  if (Object.values(e.editLrs).some((v) => v.isDisposed)) throw new Error("this editor was disposed (disposeEditor): load the editor again before editing");
}

/** The net and mode that edit a weight. */
export function netFor(e: Editor, name: string): { net: EditorNet; mode: number } {
  for (const net of Object.values(e.nets)) {
    const mode = net.modes.indexOf(name);
    if (mode >= 0) return { net, mode };
  }
  throw new Error(`the editor does not edit "${name}" (it edits ${e.config.innerParams.join(", ")})`);
}

/**
 * Trainable variables with stable checkpoint names (`<d_in>x<d_out>.<layer>.<U|V|bias|mode_scale|mode_shift>`
 * and `edit_lrs.<weight name>`), in a fixed order (optimizer slots depend on it).
 */
export function editorVariables(e: Editor): { net: Record<string, tf.Variable>; editLrs: Record<string, tf.Variable> } {
  const net: Record<string, tf.Variable> = {};
  for (const n of Object.values(e.nets)) {
    n.layers.forEach((l, i) => {
      const p = `${n.key}.${i}.`;
      net[p + "U"] = l.U;
      net[p + "V"] = l.V;
      net[p + "bias"] = l.bias;
      net[p + "mode_scale"] = l.modeScale;
      net[p + "mode_shift"] = l.modeShift;
    });
  }
  const editLrs: Record<string, tf.Variable> = {};
  for (const [k, v] of Object.entries(e.editLrs)) editLrs[`edit_lrs.${k}`] = v;
  return { net, editLrs };
}

/**
 * The network on concatenated inputs. @param z [Nk, D] @returns [Nk, D]. Differentiable in φ.
 * `mode` is one mode index for all rows, or a [Nk, nModes] one-hot matrix (rows of several edited
 * weights in one pass: the shared net's factors are then used, and transposed in the backward
 * pass, once instead of once per weight). A single mode's scale/shift rows are taken with
 * `tf.slice` (gather's gradient is missing on wasm).
 */
export function netForward(net: EditorNet, mode: number | tf.Tensor2D, z: tf.Tensor2D, init: EditorConfig["init"]): tf.Tensor2D {
  const D = netWidth(net);
  tf.util.assert(z.rank === 2 && z.shape[1] === D, () => `editor ${net.key}: input must be [N, ${D}], got [${z.shape}]`);
  let h = z;
  for (const l of net.layers) {
    const scale = typeof mode === "number" ? tf.slice(l.modeScale, [mode, 0], [1, D]) : tf.matMul(mode, l.modeScale); // [1 | Nk, D]
    const shift = typeof mode === "number" ? tf.slice(l.modeShift, [mode, 0], [1, D]) : tf.matMul(mode, l.modeShift);
    const pre = tf.add(tf.mul(tf.add(tf.matMul(tf.matMul(h, l.V), l.U), l.bias), scale), shift); // [Nk, D]
    const act = tf.maximum(pre, 0) as tf.Tensor2D; // clamp(min=0): gradient 1 at exactly 0
    h = init === "id" ? (tf.add(h, act) as tf.Tensor2D) : act;
  }
  return h;
}

/**
 * g_φ on one weight's normalised factors: ũ, δ̃ = split(g(concat(ū, δ̄))).
 * @param uBar [Nk, d_in] @param deltaBar [Nk, d_out]
 */
export function applyEditor(e: Editor, name: string, uBar: tf.Tensor2D, deltaBar: tf.Tensor2D): { uTilde: tf.Tensor2D; deltaTilde: tf.Tensor2D } {
  const { net, mode } = netFor(e, name);
  return splitOutput(net, netForward(net, mode, netInput(net, uBar, deltaBar), e.config.init), uBar, deltaBar);
}

/** The net's input from the normalised factors: concat(ū, δ̄), ū or δ̄. */
function netInput(net: EditorNet, uBar: tf.Tensor2D, deltaBar: tf.Tensor2D): tf.Tensor2D {
  return net.part === "joint" ? (tf.concat([uBar, deltaBar], 1) as tf.Tensor2D) : net.part === "u" ? uBar : deltaBar;
}

/** (ũ, δ̃) from the net's output; the side a one-sided net does not read passes through. */
function splitOutput(net: EditorNet, out: tf.Tensor2D, uBar: tf.Tensor2D, deltaBar: tf.Tensor2D): { uTilde: tf.Tensor2D; deltaTilde: tf.Tensor2D } {
  if (net.part === "u") return { uTilde: out, deltaTilde: deltaBar };
  if (net.part === "delta") return { uTilde: uBar, deltaTilde: out };
  const [uTilde, deltaTilde] = tf.split(out, [net.dIn, net.dOut], 1) as tf.Tensor2D[];
  return { uTilde, deltaTilde };
}

/**
 * g_φ on several weights at once, one pass per shared net (same result as `applyEditor` per weight).
 * @param inputs name -> {uBar [Nk, d_in], deltaBar [Nk, d_out]}
 */
export function applyEditorAll(
  e: Editor,
  inputs: Readonly<Record<string, { uBar: tf.Tensor2D; deltaBar: tf.Tensor2D }>>,
): Record<string, { uTilde: tf.Tensor2D; deltaTilde: tf.Tensor2D }> {
  const out: Record<string, { uTilde: tf.Tensor2D; deltaTilde: tf.Tensor2D }> = {};
  for (const net of Object.values(e.nets)) {
    const names = net.modes.filter((n) => inputs[n]);
    if (names.length === 0) continue;
    if (names.length === 1) {
      out[names[0]] = applyEditor(e, names[0], inputs[names[0]].uBar, inputs[names[0]].deltaBar);
      continue;
    }
    const rows = names.map((n) => inputs[n].uBar.shape[0]);
    const z = tf.concat(names.map((n) => netInput(net, inputs[n].uBar, inputs[n].deltaBar)), 0) as tf.Tensor2D; // [ΣNk, D]
    const modeIdx = names.flatMap((n, i) => new Array<number>(rows[i]).fill(net.modes.indexOf(n)));
    const onehot = tf.cast(tf.oneHot(tf.tensor1d(modeIdx, "int32"), net.modes.length), "float32") as tf.Tensor2D; // [ΣNk, M]
    const res = netForward(net, onehot, z, e.config.init);
    const parts = tf.split(res, rows, 0) as tf.Tensor2D[];
    names.forEach((n, i) => {
      out[n] = splitOutput(net, parts[i], inputs[n].uBar, inputs[n].deltaBar);
    });
  }
  return out;
}

/** Number of trainable scalars (networks + edit lrs). */
export function countEditorParams(e: Editor): number {
  const { net, editLrs } = editorVariables(e);
  return [...Object.values(net), ...Object.values(editLrs)].reduce((s, v) => s + v.size, 0);
}
