/**
 * Editing methods behind one interface, and the one registry of them that the CLI, the notebooks
 * and the API use. A method edits a model (the base or one it edited before) and returns the
 * edited model; a method that changes weights also returns the change as a value, ΔW per weight
 * (model/weightUpdate.ts):
 *
 *  - MEND: the official algorithm with a trained editor (src/mend/edit.ts);
 *  - FT, FT+KL: the fine-tuning baselines (src/baselines/fineTune.ts);
 *  - KE, ENN: the learned editors the paper compares with (src/baselines/ke.ts, enn.ts), each with
 *    its trained checkpoint; cache: the paper's caching baseline (src/baselines/cache.ts), no weights;
 *  - our extensions (src/extensions): MEND-cal (step calibration), MEND-batch (the editor trained
 *    for batched edits), MEND-batch-cal, and MEND-batch-pres (edit-time preservation; opt-in);
 *  - the lifelong methods, our additions (src/lifelong): UltraEdit, AlphaEdit and LocFT-BF, each
 *    "-style" (the published method's structure on our model, not its code); no training needed.
 *
 * The registry knows nothing of where the edits come from: what a method needs beyond the model
 * (its editor, locality texts for FT+KL, prompts to preserve) is passed in a `MethodContext`.
 */
import * as tf from "@tensorflow/tfjs";
import { DEFAULT_FT_CONFIG, FineTuneConfig, fineTuneEdit, validateFineTune } from "../baselines/fineTune";
import { CachedModel, cacheEdit, CacheKeying } from "../baselines/cache";
import { EnnEditor, ennEdit } from "../baselines/enn";
import { KeEditor, keEdit } from "../baselines/ke";
import { BATCH_EDITOR_CALIBRATION, calibration, DEFAULT_CALIBRATION, StepCalibration } from "../extensions/calibrate";
import { BATCH_EDITOR_PRESERVATION, buildPreservationSet, disposePreservationSet, preservedEdit } from "../extensions/preserve";
import { EditRequest } from "../datasets/editRecord";
import { mendEdit } from "../mend/edit";
import { ALPHA_EDIT, alphaEditRule, DEFAULT_LIFELONG, defaultGraceConfig, GRACE, GraceConfig, graceEdit, LifelongOptions, defaultLifelongWeights, keyValueEdit, KeyValueRule, LOC_FT_BF, locFtBfEdit, nullSpaceProjector, preservedCovarianceInverse, preservedKeysOf, ULTRA_EDIT, ultraEditRule } from "../lifelong";
import { Editor } from "../mend/editor";
import type { UpdateRule } from "../mend/hooks";
import { TextExample } from "../model/batch";
import { EditedModel, MethodState } from "../model/languageModel";
import { applyUpdates, ModelView, ParamsModel } from "../model/paramsModel";
import { disposeUpdate, ModelUpdate } from "../model/weightUpdate";

export interface MethodEdit {
  /** The edited model (owns what the edit made: free it with `dispose`). */
  model: EditedModel;
  /** ΔW of the edit, when the method changes weights (owned by this edit: `disposeMethodEdit`). */
  update?: ModelUpdate;
  /** The state the method carries on from this edit (owned by this edit; the edited model holds its own copy). */
  state?: MethodState;
  latencyMs: number;
  /** Optimizer steps taken (fine-tuning methods). */
  steps?: number;
}

export interface EditMethod {
  name: string;
  /** Edit `model` (never changed) with `requests`; the latency includes forming the edited model. */
  edit(model: EditedModel, requests: readonly EditRequest[]): MethodEdit;
  /** Frees what the method owns (a preservation set), if anything. */
  dispose?(): void;
  /** The most requests one edit call takes (KE: 1); absent = any number. */
  maxRequests?: number;
  /** The weights a key-value method's state belongs to (UltraEdit, AlphaEdit): a state made for others is not this method's to carry. */
  stateWeights?: readonly string[];
}

/** Frees the edited model and the update of an edit. */
export function disposeMethodEdit(e: MethodEdit): void {
  e.model.dispose();
  if (e.update) disposeUpdate(e.update);
  if (e.state) tf.dispose(Object.values(e.state.tensors));
}

/** The parameters of a model a weight-editing method is asked to edit (an error for other kinds). */
export function paramsOf(model: EditedModel, method: string): ModelView {
  if (!(model instanceof ParamsModel)) throw new Error(`${method} edits weights; this model is not parameter-backed (${model.constructor.name})`);
  return model;
}

/**
 * A method whose edit is a weight update: the edited model is `model` + ΔW. The method reads the
 * state it left on `model` (when `model` is its own edit) and leaves its new state on the edited
 * model (a copy of what the ledger records: `state` of the MethodEdit is the method's own).
 */
export function weightMethod(name: string, edit: (m: ModelView, requests: readonly EditRequest[], state?: MethodState) => { update: ModelUpdate; steps?: number; state?: MethodState }): EditMethod {
  return {
    name,
    edit(model, requests) {
      const t0 = performance.now();
      const base = paramsOf(model, name);
      const prior = model.state?.method === name ? model.state : undefined;
      const r = edit(base, requests, prior);
      const state = r.state && { method: name, meta: r.state.meta, tensors: r.state.tensors };
      const edited = applyUpdates(base, [r.update], state && cloneState(state));
      return { model: edited, update: r.update, ...(state ? { state } : {}), latencyMs: performance.now() - t0, ...(r.steps !== undefined ? { steps: r.steps } : {}) };
    },
  };
}

/** A copy of a state whose tensors are new handles on the same data (cheap; owned separately). */
export function cloneState(s: MethodState): MethodState {
  return { method: s.method, meta: { ...s.meta }, tensors: Object.fromEntries(Object.entries(s.tensors).map(([k, t]) => [k, tf.clone(t)])) };
}

/**
 * MEND with `editor` (its hooks included); `calibrate`: edit-time step calibration
 * (src/extensions/calibrate.ts); `rule`: a replaced update rule (src/mend/hooks.ts), which may carry
 * state from one edit of a model to the next.
 */
export function mendMethod(editor: Editor, name = "MEND", calibrate: StepCalibration | null = null, rule?: UpdateRule): EditMethod {
  const stepScale = calibrate ? calibration(calibrate) : null;
  return weightMethod(name, (m, requests, state) => mendEdit(m, editor, requests, { stepScale, ...(rule ? { rule, state } : {}) }));
}

/**
 * FT or FT+KL (by `cfg.cEdit`). `trainingSet`, if given, turns the requests into the set that is
 * fine-tuned on (e.g. each request with its paraphrases); success is still judged on the requests.
 */
export function fineTuneMethod(cfg: FineTuneConfig, name = cfg.cEdit === null ? "FT" : "FT+KL", trainingSet?: (requests: readonly EditRequest[]) => EditRequest[]): EditMethod {
  return weightMethod(name, (m, requests) => fineTuneEdit(m, trainingSet ? trainingSet(requests) : requests, cfg));
}

/** KE with a trained KE editor: one request per call. */
export function keMethod(ke: KeEditor, name = "KE"): EditMethod {
  return { ...weightMethod(name, (m, requests) => keEdit(m, ke, requests)), maxRequests: 1 };
}

/** ENN with a trained ENN (its step sizes and its copy of the base model). */
export function ennMethod(enn: EnnEditor, name = "ENN"): EditMethod {
  return weightMethod(name, (m, requests, state) => ennEdit(m, enn, requests, state));
}

/** The cache baseline at distance threshold ε: the edited model answers queries within ε of a cached edit. */
export function cacheMethod(threshold: number, name = "cache", keying?: CacheKeying): EditMethod {
  return {
    name,
    edit(model, requests) {
      const t0 = performance.now();
      const cached: CachedModel = cacheEdit(model, requests, threshold, keying);
      return { model: cached, state: cloneState(cached.state), latencyMs: performance.now() - t0 };
    },
  };
}

/** GRACE (src/lifelong/grace.ts): a codebook on one layer of the model it edits (a GraceModel carries it on). */
export function graceMethod(cfg: GraceConfig, name = GRACE): EditMethod {
  return {
    name,
    edit(model, requests) {
      const t0 = performance.now();
      const r = graceEdit(model, requests, cfg);
      return { model: r.model, state: cloneState(r.model.state), latencyMs: performance.now() - t0, steps: r.steps };
    },
  };
}

/** A key-value lifelong method (src/lifelong/keyValueEdit.ts) editing `weights` with `rules` (one each). */
function keyValueMethod(name: string, weights: readonly string[], o: LifelongOptions, minProb: number, rules: readonly KeyValueRule[], dispose?: () => void): EditMethod {
  const cfg = { weights, stepSize: o.stepSize, maxSteps: o.maxSteps, minProb };
  return { ...weightMethod(name, (m, requests, state) => keyValueEdit(m, requests, cfg, rules, state)), stateWeights: weights, ...(dispose ? { dispose } : {}) };
}

/** What the methods may need beyond the model they edit. */
export interface MethodContext {
  /** The single-edit editor (MEND, MEND-cal). */
  editor?: Editor;
  /** The editor trained for batched edits (MEND-batch*). */
  batchEditor?: Editor;
  /** Locality texts for FT+KL's KL term (full sentences; never the evaluated edits' own). */
  locTexts?: readonly TextExample[];
  /** Prompts whose answers MEND-batch-pres preserves, with the base model they are measured on. */
  preserve?: { model: ModelView; prompts: readonly string[] };
  /** Overrides the calibration margin of MEND-cal and MEND-batch-cal. */
  margin?: number;
  /** Overrides FT's and FT+KL's lr and optimiser (default DEFAULT_FT_CONFIG). */
  ft?: Partial<Pick<FineTuneConfig, "lr" | "optimizer">>;
  /** The weights FT and FT+KL tune (default: the editor's). */
  innerParams?: readonly string[];
  /** A trained KE editor (KE). */
  ke?: KeEditor;
  /** A trained ENN (ENN). */
  enn?: EnnEditor;
  /** The cache's distance threshold ε* (cache; chosen on validation edits with its keying: `chooseCache`). */
  cacheThreshold?: number;
  /** What the cache keys on (default: the last block mean-pooled); chosen with ε* by `chooseCache`. */
  cacheKeying?: CacheKeying;
  /**
   * The lifelong methods (UltraEdit, AlphaEdit, LocFT-BF): the model they edit (for AlphaEdit's
   * preserved keys), the weights (several spread each edit over them; default `defaultLifelongWeights`)
   * and the prompts with answers whose outputs AlphaEdit keeps (at most half of each
   * weight's input size are used).
   */
  lifelong?: { model: ModelView; weights?: readonly string[]; preserve?: readonly TextExample[]; options?: Partial<LifelongOptions> };
}

/** Every method name the registry knows, in the order evaluations report them. */
export const METHODS = ["MEND", "MEND-cal", "MEND-batch", "MEND-batch-cal", "MEND-batch-pres", "KE", "ENN", "cache", "FT", "FT+KL", ULTRA_EDIT, ALPHA_EDIT, LOC_FT_BF, GRACE] as const;

/** The methods named (METHODS), built from `ctx`; a method that lacks what it needs says so. Free them with `dispose`. */
export function buildMethods(names: readonly string[], ctx: MethodContext): EditMethod[] {
  const ft = { ...DEFAULT_FT_CONFIG, ...ctx.ft };
  validateFineTune(ft);
  const need = <T>(x: T | undefined, name: string, what: string): T => {
    if (x === undefined) throw new Error(`method ${name} needs ${what}`);
    return x;
  };
  const editor = (name: string) => need(ctx.editor, name, "an editor (--editor DIR)");
  const batchEditor = (name: string) => need(ctx.batchEditor, name, "the batch-trained editor: train it (README) or pass --batch-editor DIR");
  const inner = (name: string) => [...(ctx.innerParams ?? need(ctx.editor?.config.innerParams, name, "the weights to tune (an editor's, or innerParams)"))];
  // The lifelong methods' model, options and weights (named, or the last `layers(options)` blocks' mlp.c_proj).
  const life = (name: string, layers: (o: LifelongOptions) => number = () => 1) => {
    const l = need(ctx.lifelong, name, "the model it edits (MethodContext.lifelong)");
    const o = { ...DEFAULT_LIFELONG, ...l.options };
    const weights = l.weights?.length ? l.weights : defaultLifelongWeights(l.model.config.n_layer, layers(o));
    for (const w of weights) if (l.model.params[w]?.rank !== 2) throw new Error(`method ${name}: "${w}" is not a 2-D weight of this model`);
    return { ...l, weights, o };
  };
  const all: Record<(typeof METHODS)[number], (name: string) => EditMethod> = {
    MEND: (n) => mendMethod(editor(n)),
    "MEND-cal": (n) => mendMethod(editor(n), n, { ...DEFAULT_CALIBRATION, ...(ctx.margin ? { margin: ctx.margin } : {}) }),
    "MEND-batch": (n) => mendMethod(batchEditor(n), n),
    "MEND-batch-cal": (n) => mendMethod(batchEditor(n), n, { ...BATCH_EDITOR_CALIBRATION, ...(ctx.margin ? { margin: ctx.margin } : {}) }),
    "MEND-batch-pres": (n) => {
      const e = batchEditor(n);
      const pres = need(ctx.preserve, n, "prompts to preserve and the base model to measure them on");
      const set = buildPreservationSet(pres.model, e.config.innerParams, pres.prompts);
      const p = { ...BATCH_EDITOR_PRESERVATION, set };
      return { ...weightMethod(n, (m, requests) => preservedEdit(m, e, requests, p, BATCH_EDITOR_CALIBRATION)), dispose: () => disposePreservationSet(set) };
    },
    KE: (n) => keMethod(need(ctx.ke, n, "a trained KE editor (--ke DIR; README: Regenerating the checkpoints)"), n),
    ENN: (n) => ennMethod(need(ctx.enn, n, "a trained ENN (--enn DIR; README: Regenerating the checkpoints)"), n),
    cache: (n) => cacheMethod(need(ctx.cacheThreshold, n, "its distance threshold (chosen on validation edits: chooseCache)"), n, ctx.cacheKeying),
    FT: (n) => fineTuneMethod({ ...ft, innerParams: inner(n), cEdit: null, locTexts: [] }),
    "FT+KL": (n) => {
      const locTexts = need(ctx.locTexts, n, "locality texts for its KL term");
      if (locTexts.length === 0) throw new Error(`method ${n} needs locality texts for its KL term; none were given`);
      return fineTuneMethod({ ...ft, innerParams: inner(n), cEdit: 1e-2, locTexts: [...locTexts] });
    },
    [ULTRA_EDIT]: (n) => {
      const l = life(n);
      return keyValueMethod(n, l.weights, l.o, l.o.minProb, l.weights.map(() => ultraEditRule(l.o.ultraLambda)));
    },
    [ALPHA_EDIT]: (n) => {
      const l = life(n, (o) => o.alphaLayers);
      const prompts = need(l.preserve, n, "prompts whose answers it preserves (MethodContext.lifelong.preserve)");
      const owned: tf.Tensor[] = [];
      try {
        const k0 = preservedKeysOf(l.model, l.weights, prompts, Math.floor(Math.min(...l.weights.map((w) => l.model.params[w].shape[0])) * l.o.preserveFraction));
        try {
          for (const w of l.weights) owned.push(nullSpaceProjector(k0[w]));
        } finally {
          tf.dispose(Object.values(k0));
        }
        const projectors = owned.slice() as tf.Tensor2D[];
        const all = l.o.alphaCovariance > 0 ? preservedKeysOf(l.model, l.weights, prompts, Number.MAX_SAFE_INTEGER) : null;
        let rules: KeyValueRule[];
        try {
          rules = l.weights.map((w, i) => {
            if (!all) return alphaEditRule(projectors[i], l.o.alphaLambda);
            const a0 = preservedCovarianceInverse(all[w], projectors[i], l.o.alphaLambda, l.o.alphaCovariance);
            owned.push(a0);
            return alphaEditRule(projectors[i], l.o.alphaLambda, a0);
          });
        } finally {
          if (all) tf.dispose(Object.values(all));
        }
        return keyValueMethod(n, l.weights, l.o, l.o.alphaMinProb, rules, () => tf.dispose(owned));
      } catch (e) {
        tf.dispose(owned);
        throw e;
      }
    },
    [LOC_FT_BF]: (n) => {
      const l = life(n);
      const cfg = { weights: l.weights, lr: l.o.ftLr, batchSize: l.o.ftBatchSize, maxEpochs: l.o.ftMaxEpochs };
      return weightMethod(n, (m, requests, state) => locFtBfEdit(m, requests, cfg, state));
    },
    [GRACE]: (n) => {
      const l = need(ctx.lifelong, n, "the model it edits (MethodContext.lifelong)");
      const o = { ...DEFAULT_LIFELONG, ...l.options };
      const d = defaultGraceConfig(l.model.config.n_layer);
      if ((l.weights?.length ?? 0) > 1) throw new Error(`method ${n} adapts one layer; ${l.weights!.length} weights were named`);
      const weight = l.weights?.[0] ?? d.weight;
      if (l.model.params[weight]?.rank !== 2) throw new Error(`method ${n}: "${weight}" is not a 2-D weight of this model`);
      return graceMethod({ ...d, weight, epsInit: o.graceEps, steps: o.graceSteps, lr: o.graceLr }, n);
    },
  };
  const built: EditMethod[] = [];
  try {
    for (const n of names) {
      const f = all[n as (typeof METHODS)[number]];
      if (!f) throw new Error(`unknown method "${n}"; choose from ${METHODS.join(", ")}`);
      built.push(f(n));
    }
  } catch (e) {
    for (const m of built) m.dispose?.();
    throw e;
  }
  return built;
}
