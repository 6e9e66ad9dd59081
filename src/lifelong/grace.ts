/**
 * GRACE-style lifelong editing (our addition after Hartvigsen et al., "Aging with GRACE", NeurIPS
 * 2023; official logic: EasyEdit easyeditor/models/grace/GRACE.py, `GRACEAdapter.forward`, `add_key`,
 * `split_epsilons_in_half`; hparams/GRACE/gpt2-xl.yaml). The base weights never change. One linear
 * layer gets a codebook: keys (that layer's input at an edit prompt's last token), a deferral radius
 * ε per key, a value per key (a replacement for the layer's output there), and the edit's label.
 * At inference, an input whose query (the layer's input at its own last prompt token) lies within
 * the nearest key's ε has the layer's output at that token replaced by the key's value
 * ("replace_last"); any other input runs the base model untouched.
 *
 * An edit: its query against the codebook (the official rules, on the first of its training steps):
 * no key yet, or the nearest farther than ε_init + its ε: a new key with ε_init; within, with another
 * label: a new key, and both radii set to half the distance (the old one 1e-5 less); within, same
 * label: the nearest key's ε grows to the distance ("coverage") and its value is trained instead.
 * The value (new: uniform in [0, 1), "cold") is trained by Adam (lr 1.0, 200 steps) on the target's
 * token-mean NLL, the rest fixed.
 *
 * Where ours differs (docs/deviations.md): labels are compared as the target's token ids (official:
 * the mean of the label tensor, prompt positions included); the query at inference is each input's
 * own last prompt token (EasyEdit keeps the last edit's position); a call of k requests edits them
 * one after another.
 * Shapes: N rows (batch × time), K keys, d_in and d_out the layer's sizes.
 */
import * as tf from "@tensorflow/tfjs";
import { Batch, BatchArrays, disposeBatch, encodeExamples, toBatch } from "../model/batch";
import { EditRequest, validateRequests } from "../datasets/editRecord";
import { argmin, nearestWithin, pairwiseDistances } from "../model/distances";
import { gptForward } from "../model/gpt";
import type { EditedModel, LanguageModel, MethodState } from "../model/languageModel";
import { meanNll } from "../model/loss";
import { ModelView, ParamsModel } from "../model/paramsModel";
import { Rng } from "../model/rng";
import { continuation } from "../model/tokenizer";

export const GRACE = "GRACE";

export interface GraceConfig {
  /** The adapted linear layer's weight (official gpt2-xl: h.35.mlp.c_fc of 48 blocks). */
  weight: string;
  /** A new key's deferral radius ε_init (official 1.0). */
  epsInit: number;
  /** Adam steps and lr that train a value (official n_iter 200, edit_lr 1.0). */
  steps: number;
  lr: number;
  /** Seed of the cold value initialisation. */
  seed: number;
}

/** The official gpt2-xl settings; the layer at 35/48 of the depth, as there. */
export function defaultGraceConfig(nLayer: number): GraceConfig {
  return { weight: `h.${Math.floor((35 / 48) * nLayer)}.mlp.c_fc.weight`, epsInit: 1.0, steps: 200, lr: 1.0, seed: 0 };
}

/** One codebook entry's plain part (its key and value are rows of the codebook's tensors). */
export interface GraceEntry {
  /** The deferral radius. */
  eps: number;
  /** The target token ids of the edit that made it (its label). */
  label: number[];
  /** The edits (prompt and target) whose training went to this entry, oldest first. */
  edits: EditRequest[];
}

/** The codebook: keys [K, d_in], values [K, d_out] (owned by the model that carries them) and the entries. */
export interface Codebook {
  weight: string;
  keys: tf.Tensor2D | null;
  values: tf.Tensor2D | null;
  entries: GraceEntry[];
}

/** The base model with a GRACE codebook on one layer. Owns the codebook's tensors. */
export class GraceModel implements EditedModel {
  readonly state: MethodState;

  constructor(readonly base: ModelView, readonly codebook: Codebook) {
    const tensors: Record<string, tf.Tensor> = codebook.keys && codebook.values ? { keys: codebook.keys, values: codebook.values } : {};
    this.state = { method: GRACE, tensors, meta: { weight: codebook.weight, entries: codebook.entries.map((e) => ({ eps: e.eps, label: [...e.label], edits: e.edits.map((r) => ({ ...r })) })) } };
  }

  get config() {
    return this.base.config;
  }

  get tokenizer() {
    return this.base.tokenizer;
  }

  /** For each row, the entry whose value replaces the layer's output at its last prompt token, or -1. */
  routes(batch: Batch, arrays: BatchArrays): number[] {
    let out: number[] = [];
    tf.tidy(() => {
      gptForward(this.base.params, this.base.config, batch.inputIds, { attentionMask: batch.attentionMask, adapters: { [this.codebook.weight]: (x, z) => ((out = this.nearest(queries(x, arrays))), z) } });
    });
    return out;
  }

  /** Per query row [B, d_in], the nearest entry within its radius, or -1. */
  private nearest(q: tf.Tensor2D): number[] {
    const { keys, entries } = this.codebook;
    return keys ? nearestWithin(q, keys, (k) => entries[k].eps) : new Array(q.shape[0]).fill(-1);
  }

  logits(batch: Batch, arrays: BatchArrays): tf.Tensor3D {
    const values = this.codebook.values;
    const adapt = (x: tf.Tensor2D, z: tf.Tensor2D) => {
      const hit = this.nearest(queries(x, arrays));
      return values && hit.some((h) => h >= 0) ? replaceAtQueries(z, arrays, hit, tf.matMul(oneHotRows(hit, values.shape[0]), values)) : z;
    };
    return gptForward(this.base.params, this.base.config, batch.inputIds, { attentionMask: batch.attentionMask, adapters: { [this.codebook.weight]: adapt } }).logits;
  }

  dispose(): void {
    tf.dispose([this.codebook.keys, this.codebook.values].filter((t): t is tf.Tensor2D => t !== null));
  }
}

/** Row indices (b·T + last prompt position) of each row's query. */
function queryRows(arrays: BatchArrays): number[] {
  const T = arrays.inputIds[0].length;
  return arrays.lastPosition.map((p, b) => b * T + p);
}

/** The layer's input at each row's last prompt token [B, d_in]. */
function queries(x: tf.Tensor2D, arrays: BatchArrays): tf.Tensor2D {
  return tf.gather(x, tf.tensor1d(queryRows(arrays), "int32")) as tf.Tensor2D;
}

/** [B, K] one-hot rows of the chosen entries (a zero row for -1): a product with the values picks rows with a gradient (gather's is missing on wasm). */
function oneHotRows(hit: readonly number[], k: number): tf.Tensor2D {
  return tf.tensor2d(hit.flatMap((h) => Array.from({ length: k }, (_, j) => (j === h ? 1 : 0))), [hit.length, k]);
}

/** z [N, d_out] with row (b, last prompt token) replaced by `chosen[b]` where hit[b] ≥ 0. */
function replaceAtQueries(z: tf.Tensor2D, arrays: BatchArrays, hit: readonly number[], chosen: tf.Tensor2D): tf.Tensor2D {
  const rows = queryRows(arrays);
  const N = z.shape[0];
  const B = hit.length;
  // S [N, B]: 1 at (query row of b, b) for every hit; z + S (chosen − z at the query rows)
  const s = new Float32Array(N * B);
  hit.forEach((h, b) => {
    if (h >= 0) s[rows[b] * B + b] = 1;
  });
  const at = tf.gather(z, tf.tensor1d(rows, "int32"));
  return tf.add(z, tf.matMul(tf.tensor2d(s, [N, B]), tf.sub(chosen, at))) as tf.Tensor2D;
}

const sameLabel = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Edit `requests` one after another into the codebook of `model` (a GraceModel, or a plain model:
 * a fresh codebook on `cfg.weight`). Pure: returns a new GraceModel that owns a new codebook.
 */
export function graceEdit(model: LanguageModel, requests: readonly EditRequest[], cfg: GraceConfig): { model: GraceModel; steps: number; entry: number[] } {
  validateRequests(requests);
  const prior = model instanceof GraceModel ? model : null;
  const base = prior ? prior.base : model;
  if (!(base instanceof ParamsModel)) throw new Error(`GRACE sits on a parameter-backed model; this one is ${base.constructor.name}`);
  const w = base.params[cfg.weight];
  if (!w || w.rank !== 2) throw new Error(`GRACE: "${cfg.weight}" is not a linear weight of this model`);
  if (prior && prior.codebook.weight !== cfg.weight) throw new Error(`GRACE: this model's codebook sits on ${prior.codebook.weight}, not ${cfg.weight}`);
  if (!(cfg.epsInit > 0 && Number.isFinite(cfg.epsInit))) throw new Error(`GRACE: ε_init must be a positive number, got ${cfg.epsInit}`);
  let keys = prior?.codebook.keys ? tf.clone(prior.codebook.keys) : null;
  let values = prior?.codebook.values ? tf.clone(prior.codebook.values) : null;
  const entries: GraceEntry[] = (prior?.codebook.entries ?? []).map((e) => ({ eps: e.eps, label: [...e.label], edits: [...e.edits] }));
  const rng = new Rng(cfg.seed * 7919 + entries.length);
  const dOut = w.shape[1] as number;
  let steps = 0;
  const chosenEntries: number[] = [];
  try {
    for (const r of requests) {
      const arrays = encodeExamples(base.tokenizer, [{ prompt: r.prompt, target: r.target }], "target", base.config.n_positions);
      const batch = toBatch(arrays);
      try {
        const label = base.tokenizer.encode(continuation(r.prompt, r.target));
        const q = tf.tidy(() => {
          const x = gptForward(base.params, base.config, batch.inputIds, { attentionMask: batch.attentionMask, capture: [cfg.weight] }).inputs[cfg.weight];
          return queries(x, arrays);
        });
        // the codebook rules, on the query of this edit
        let chosen: number;
        const addKey = (eps: number) => {
          const v = tf.tensor2d(Array.from({ length: dOut }, () => rng.next()), [1, dOut]);
          const nk = keys ? tf.concat([keys, q]) : tf.clone(q);
          const nv = values ? tf.concat([values, v]) : tf.clone(v);
          tf.dispose([keys, values, v].filter((t): t is tf.Tensor2D => t !== null));
          keys = nk as tf.Tensor2D;
          values = nv as tf.Tensor2D;
          entries.push({ eps, label, edits: [r] });
          return entries.length - 1;
        };
        if (!keys) chosen = addKey(cfg.epsInit);
        else {
          const d = pairwiseDistances(q, keys)[0];
          const near = argmin(d);
          if (d[near] > cfg.epsInit + entries[near].eps) chosen = addKey(cfg.epsInit);
          else if (!sameLabel(label, entries[near].label)) {
            chosen = addKey(d[near] / 2);
            entries[near].eps = d[near] / 2 - 1e-5;
          } else {
            if (d[near] > entries[near].eps) entries[near].eps = d[near];
            entries[near].edits.push(r);
            chosen = near;
          }
        }
        q.dispose();
        chosenEntries.push(chosen);
        // train the chosen value: the layer's output at the prompt's last token replaced by it
        const init = tf.slice(values!, [chosen, 0], [1, dOut]);
        const v = tf.variable(init, true);
        init.dispose(); // the variable keeps its own reference to the data
        const opt = tf.train.adam(cfg.lr);
        try {
          for (let s = 0; s < cfg.steps; s++) {
            opt.minimize(() => meanNll(gptForward(base.params, base.config, batch.inputIds, { attentionMask: batch.attentionMask, adapters: { [cfg.weight]: (_x, z) => replaceAtQueries(z, arrays, [0], v) } }).logits, batch.labels), false, [v]);
            steps++;
          }
          const old = values!;
          const next = tf.tidy(() => tf.concat([tf.slice(old, [0, 0], [chosen, dOut]), v, tf.slice(old, [chosen + 1, 0], [entries.length - chosen - 1, dOut])]) as tf.Tensor2D);
          values!.dispose();
          values = next;
        } finally {
          opt.dispose();
          v.dispose();
        }
      } finally {
        disposeBatch(batch);
      }
    }
    return { model: new GraceModel(base, { weight: cfg.weight, keys, values, entries }), steps, entry: chosenEntries };
  } catch (e) {
    tf.dispose([keys, values].filter((t): t is tf.Tensor2D => t !== null));
    throw e;
  }
}
