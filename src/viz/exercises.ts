/**
 * The tutorial's implement-it exercises: the student writes one step of MEND in plain tf.js, and a
 * check compares it with the library's own step on the same inputs, failing with a message that
 * says what differs (by how much, where) and what usually causes it.
 *
 * Each exercise is three cells in a notebook: the exercise (a signature whose body is `todo(...)`),
 * a collapsed solution tagged "solution", and the check tagged "check". scripts/run-notebooks.py
 * runs every check once *before* its solution and requires it to fail, then after it and requires
 * it to pass, so a check that cannot fail is caught.
 *
 * The checks own what they allocate: the student's outputs are freed after comparing.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, disposeBatch, makeBatch } from "../model/batch";
import { GPT2Config } from "../model/config";
import { Params } from "../model/gpt";
import { ModelView } from "../model/paramsModel";
import { captureEditorFactors, transformFactors, updatesOf } from "../mend/edit";
import { Editor, editorVariables } from "../mend/editor";
import { autodiffWeightGradient, captureFactors, disposeFactors, Factors, outerProductSum } from "../mend/factor";
import { metaBatchGrads, exampleMetaLoss, DEFAULT_META_LOSS_CONFIG } from "../mend/metaLoss";
import { MetaExample } from "../mend/metaExamples";
import { denseUpdate } from "../mend/update";
import { NotebookError } from "./notebook";

/** The body of an exercise not written yet: calling it fails with the exercise's name. */
export function todo(what: string): never {
  throw new NotebookError(`TODO: ${what} is not written yet: write it in the exercise cell (the collapsed cell after it is one solution), run that cell, then this check again`);
}

/**
 * Calls the student's function and frees what it returns with `free`; throws when it left tensors
 * behind besides its result (intermediates not wrapped in tf.tidy).
 */
function leakFree<T>(what: string, call: () => T, free: (r: T) => tf.Tensor[]): T {
  const before = tf.memory().numTensors;
  const r = call();
  const own = new Set(free(r).filter((t) => t instanceof tf.Tensor && !t.isDisposed).map((t) => t.id)).size;
  const left = tf.memory().numTensors - before - own;
  if (left > 0) throw new NotebookError(`${what} left ${left} tensor(s) allocated besides what it returned: wrap its body in tf.tidy(() => ...) (tf.tidy keeps the tensors it returns)`);
  return r;
}

/** max |a − b| and max |b| (the scale the difference is judged against). */
function maxDiff(a: tf.Tensor, b: tf.Tensor): { diff: number; scale: number } {
  return tf.tidy(() => {
    const d = tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
    const s = tf.max(tf.abs(b)).dataSync()[0];
    return { diff: d, scale: s };
  });
}

function shapeOf(x: unknown): string {
  return x instanceof tf.Tensor ? `[${x.shape}]` : x === undefined ? "undefined" : typeof x;
}

function requireTensor(x: unknown, what: string, shape: readonly number[]): tf.Tensor {
  if (!(x instanceof tf.Tensor)) throw new NotebookError(`${what} should be a tensor of shape [${shape}], got ${shapeOf(x)}`);
  if (x.shape.length !== shape.length || x.shape.some((d: number, i: number) => d !== shape[i])) throw new NotebookError(`${what} has shape [${x.shape}], expected [${shape}]`);
  if (x.isDisposed) throw new NotebookError(`${what} was already disposed: return tensors the check can read (keep them out of a tf.tidy that ends before the return, or tf.keep them)`);
  return x;
}

/** A comparison line; throws with `hint` when the relative difference exceeds `tol`. */
function compare(what: string, mine: tf.Tensor, library: tf.Tensor, tol: number, hint: string): string {
  const { diff, scale } = maxDiff(mine, library);
  const rel = diff / Math.max(scale, 1e-12);
  if (!(rel <= tol)) throw new NotebookError(`${what}: max |yours − library| = ${diff.toExponential(2)} against a scale of ${scale.toExponential(2)} (relative ${rel.toExponential(1)}, allowed ${tol.toExponential(0)}). ${hint}`);
  return `${what}: max |yours − library| = ${diff.toExponential(2)} (scale ${scale.toExponential(2)})`;
}

/** What the student's factor capture returns: every edited weight's u [N, d_in] and δ [N, d_out], all B·T rows. */
export type MyFactors = (params: Readonly<Params>, config: GPT2Config, batch: Batch, names: readonly string[]) => { u: Record<string, tf.Tensor>; delta: Record<string, tf.Tensor> };

/**
 * Notebook 3: the student's u and δ (all B·T token rows) against the library's captured rows, and
 * Σ u δᵀ against the autodiff gradient ∂L/∂W. Returns one line per weight.
 */
export function checkFactors(model: ModelView, batch: Batch, names: readonly string[], mine: MyFactors): string[] {
  const [B, T] = batch.inputIds.shape;
  const got = leakFree("your myFactors", () => mine(model.params, model.config, batch, names), (r) => (r && r.u && r.delta ? [...Object.values(r.u), ...Object.values(r.delta)] : []));
  if (!got || typeof got !== "object" || !got.u || !got.delta) throw new NotebookError(`your function should return { u, delta }, each a record weight name -> tensor; got ${shapeOf(got)}`);
  const lib = captureFactors(model.params, model.config, batch, names);
  const lines: string[] = [];
  try {
    for (const n of names) {
      const [dIn, dOut] = model.params[n].shape;
      const u = requireTensor(got.u[n], `u["${n}"]`, [B * T, dIn]);
      const d = requireTensor(got.delta[n], `delta["${n}"]`, [B * T, dOut]);
      const idx = tf.tensor1d(lib.rows[n], "int32");
      const [uRows, dRows] = [tf.gather(u, idx), tf.gather(d, idx)];
      idx.dispose();
      try {
        lines.push(compare(`u of ${n}`, uRows, lib.u[n], 1e-5, "u is the layer's input: capture it in the forward (`capture: names`, then `out.inputs[name]`), one row per token."));
        lines.push(compare(`δ of ${n}`, dRows, lib.delta[n], 1e-3, "δ is ∂L/∂z: the gradient of the mean target NLL (meanNll) with respect to a zero probe added to the layer's output (`probes`), taken with tf.valueAndGrads over the probes."));
        const sum = outerProductSum(u as tf.Tensor2D, d as tf.Tensor2D);
        const auto = autodiffWeightGradient(model.params, model.config, batch, n);
        try {
          lines.push(compare(`Σ u δᵀ of ${n} against ∂L/∂W by autodiff`, sum, auto, 1e-3, "Σ_i u_i δ_iᵀ is uᵀ δ: [d_in, N] times [N, d_out]."));
        } finally {
          tf.dispose([sum, auto]);
        }
      } finally {
        tf.dispose([uRows, dRows]);
      }
    }
  } finally {
    disposeFactors(lib);
    tf.dispose([...Object.values(got.u), ...Object.values(got.delta)]);
  }
  return lines;
}

/** What the student's editor forward returns for one weight, from its raw factors. */
export type MyEditorForward = (editor: Editor, name: string, u: tf.Tensor2D, delta: tf.Tensor2D) => { uTilde: tf.Tensor; deltaTilde: tf.Tensor };

/**
 * Notebook 4: the student's g_φ (normalise with the stored statistics, the two residual low-rank
 * layers with the weight's FiLM mode, split) against `transformFactors`, for every edited weight.
 */
export function checkEditorForward(editor: Editor, factors: Factors, mine: MyEditorForward): string[] {
  const lib = tf.tidy(() => transformFactors(editor, factors));
  const lines: string[] = [];
  try {
    for (const n of editor.config.innerParams) {
      const u = factors.u[n];
      const d = factors.delta[n];
      const got = leakFree("your myEditorForward", () => mine(editor, n, u, d), (r) => (r ? [r.uTilde, r.deltaTilde] : []));
      if (!got || typeof got !== "object") throw new NotebookError(`your function should return { uTilde, deltaTilde }; got ${shapeOf(got)}`);
      try {
        const ut = requireTensor(got.uTilde, `uTilde of ${n}`, u.shape);
        const dt = requireTensor(got.deltaTilde, `deltaTilde of ${n}`, d.shape);
        const hint =
          "In order: ū = (u − mean)/(σ + 1e-7) with σ = sqrt(m2/(count − 1)) from the net's stats (δ̄ likewise); z = concat(ū, δ̄); per layer pre = (z V U + bias) ⊙ modeScale[mode] + modeShift[mode] and z = z + max(pre, 0); then split z into d_in and d_out columns.";
        lines.push(compare(`ũ of ${n}`, ut, lib[n].uTilde, 1e-4, hint));
        lines.push(compare(`δ̃ of ${n}`, dt, lib[n].deltaTilde, 1e-4, hint));
      } finally {
        tf.dispose([got.uTilde, got.deltaTilde].filter((t) => t instanceof tf.Tensor && !t.isDisposed && t !== u && t !== d));
      }
    }
  } finally {
    tf.dispose(Object.values(lib).flatMap((t) => [t.uTilde, t.deltaTilde]));
  }
  return lines;
}

/** The student's ΔW of one weight from the editor's output. */
export type MyDeltaW = (editor: Editor, name: string, uTilde: tf.Tensor2D, deltaTilde: tf.Tensor2D) => tf.Tensor;

/** Notebook 4: ΔW = α Σ ũ δ̃ᵀ against the library's update, for every edited weight. */
export function checkDeltaW(model: ModelView, editor: Editor, factors: Factors, mine: MyDeltaW): string[] {
  const lines: string[] = [];
  tf.tidy(() => {
    const t = transformFactors(editor, factors);
    const updates = updatesOf(editor, t);
    for (const n of editor.config.innerParams) {
      const lib = denseUpdate(updates[n]);
      const got = requireTensor(mine(editor, n, t[n].uTilde, t[n].deltaTilde), `ΔW of ${n}`, model.params[n].shape);
      const alpha = editor.editLrs[n].dataSync()[0];
      lines.push(compare(`ΔW of ${n}`, got, lib, 1e-4, `ΔW = α ũᵀ δ̃ ([d_in, Nk] times [Nk, d_out]) with α = editor.editLrs[name] (here ${alpha.toExponential(2)}); the official code adds it to W.`));
    }
  });
  return lines;
}

/** The student's meta-loss of one example: a scalar, differentiable in the editor's variables. */
export type MyMetaLoss = (model: ModelView, editor: Editor, example: MetaExample, factors: Factors) => tf.Scalar;

/**
 * Notebook 5: the student's L = c_edit L_edit + c_loc L_loc of one example against the library's
 * value (`exampleMetaLoss`) and its gradient with respect to every editor variable against
 * `metaBatchGrads` (statistics frozen). Returns the lines and the library's gradient norm.
 */
export function checkMetaLoss(model: ModelView, editor: Editor, example: MetaExample, mine: MyMetaLoss): string[] {
  const lines: string[] = [];
  const libValue = exampleMetaLoss(model, editor, example);
  const { net, editLrs } = editorVariables(editor);
  const vars = { ...net, ...editLrs };
  const lib = metaBatchGrads(model, editor, [[example]], vars, DEFAULT_META_LOSS_CONFIG, false);
  if (!lib.grads) throw new NotebookError("the library's meta-gradient is not finite for this example: pick another");
  let value: tf.Scalar | undefined;
  let grads: tf.NamedTensorMap | undefined;
  const batch = makeBatch(model.tokenizer, [example.editInner], "target", model.config.n_positions);
  const factors = captureEditorFactors(model.params, model.config, batch, editor);
  try {
    const out = tf.variableGrads(() => {
      const v = mine(model, editor, example, factors);
      if (!(v instanceof tf.Tensor) || v.rank !== 0) throw new NotebookError(`your meta-loss should return a scalar tensor, got ${shapeOf(v)}`);
      return v;
    }, Object.values(vars));
    value = out.value;
    grads = out.grads;
    const v = value.dataSync()[0];
    const rel = Math.abs(v - libValue.total) / Math.abs(libValue.total);
    if (!(rel < 1e-3)) throw new NotebookError(`your meta-loss is ${v.toFixed(5)}, the library's ${libValue.total.toFixed(5)} (L_edit ${libValue.lEdit.toFixed(5)}, L_loc ${libValue.lLoc.toExponential(3)}). L_edit is the mean NLL of y_e's tokens after x'_e with the edited weights; L_loc the mean over x_loc's non-pad positions of KL(p_θ ‖ p_θ'); L = 0.1 L_edit + 1 L_loc.`);
    lines.push(`meta-loss: yours ${v.toFixed(6)}, library ${libValue.total.toFixed(6)}`);
    const missing = Object.entries(vars).filter(([, x]) => !grads![x.name]).map(([k]) => k);
    if (missing.length) throw new NotebookError(`no gradient reached ${missing.slice(0, 4).join(", ")}${missing.length > 4 ? ", ..." : ""}: the edited weights must be computed from the editor inside your function (u and δ are constants, the editor's output is not)`);
    let worst = { name: "", rel: 0 };
    for (const [k, x] of Object.entries(vars)) {
      const { diff, scale } = maxDiff(grads[x.name], lib.grads[k]);
      const r = diff / Math.max(scale, 1e-20);
      if (r > worst.rel) worst = { name: k, rel: r };
    }
    if (!(worst.rel < 1e-2)) throw new NotebookError(`the gradient of ${worst.name} differs from the library's by ${worst.rel.toExponential(1)} of its largest entry: check that the locality logits before the edit are constants (computed outside the loss, or wrapped so no gradient flows) and that both terms are weighted 0.1 and 1`);
    lines.push(`gradients of all ${Object.keys(vars).length} editor tensors: largest relative difference ${worst.rel.toExponential(1)} (${worst.name})`);
  } finally {
    tf.dispose([...(value ? [value] : []), ...Object.values(grads ?? {}), ...Object.values(lib.grads)]);
    disposeFactors(factors);
    disposeBatch(batch);
  }
  return lines;
}

