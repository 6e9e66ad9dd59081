/**
 * The MEND lab: the notebooks' playground as a session the web page drives (page.ts) and tests run
 * in Node. It holds the base model, the shipped editor and the facts world; each edit goes through
 * the one method registry (eval/methods.ts) and returns everything the page shows: the top-k before
 * and after, the fact's paraphrases and neighbours, the update per edited weight, ũ and δ̃ per token
 * (MEND), the drift of the subject's and the relation's other facts, and, in stream mode, the edits
 * so far in an edit ledger with retention and locality, and undo.
 *
 * No DOM and no file system here: the page fetches the folders (fetchFolder.ts) and hands the
 * bytes to `labFromFiles`; Node tests hand it the same bytes read from disk. Every step that reads
 * tensors runs through the lab's `Reads` (settledReads.ts): once, or in passes on a backend whose
 * synchronous reads do not work; so each such step is free of side effects until it is kept.
 */
import * as tf from "@tensorflow/tfjs";
import type { CacheKeying } from "../baselines/cache";
import { EditRequest } from "../datasets/editRecord";
import { worldMethodContext } from "../eval/evaluate";
import { buildMethods, disposeMethodEdit, EditMethod, MethodEdit } from "../eval/methods";
import { probesFor, ProbeResult, runProbes } from "../eval/report";
import { Editor, disposeEditor } from "../mend/editor";
import { editorFromFiles } from "../mend/editorFolder";
import { EditLedger } from "../model/editLedger";
import { EditedModel } from "../model/languageModel";
import { Model, modelFromFiles } from "../model/modelFolder";
import { applyUpdates } from "../model/paramsModel";
import { nextTokenTopK, scoreTargets } from "../model/score";
import { denseDelta, ModelUpdate } from "../model/weightUpdate";
import { factorsByToken, TokenFactorRow } from "../viz/inspect";
import { World, WorldFile } from "../world/world";
import { directReads, Reads } from "./settledReads";

/** The methods the lab offers, in the order of its menu (all from the registry). */
export const LAB_METHODS = ["MEND", "MEND-cal", "FT", "FT+KL", "UltraEdit", "AlphaEdit", "LocFT-BF", "cache"] as const;
export type LabMethod = (typeof LAB_METHODS)[number];

/** What the lab's build computed in Node and ships beside the checkpoints (lab.json). */
export interface LabConfig {
  /** The cache's distance threshold ε*, chosen with its keying on the world's validation edits (baselines/cache.ts `chooseCache`). */
  cacheThreshold: number;
  /** What the cache keys on (absent: the last block mean-pooled). */
  cacheKeying?: CacheKeying;
}

export interface TopToken {
  token: string;
  prob: number;
}

/** One edited weight: ‖ΔW‖_F / ‖W‖_F of this edit. */
export interface LayerUpdate {
  weight: string;
  relative: number;
}

/** Δ p(the world's answer) of facts of the edited subject's kind: rows relations, columns subjects. */
export interface DriftMap {
  relations: string[];
  subjects: string[];
  /** [relation][subject]: p after − p before (NaN for the edited fact itself). */
  change: number[][];
  edited: { relation: string; subject: string } | null;
}

export interface StreamState {
  /** The edits so far, oldest first. */
  edits: { id: number; method: string; prompt: string; target: string }[];
  /** Fraction of the edits so far whose prompt gives their target. */
  retention: number;
  /** Fraction of the fixed locality facts whose answer is still the base model's. */
  locality: number;
}

export interface EditView {
  request: EditRequest;
  method: string;
  backend: string;
  /** The method's edit, on its own clock (on WebGPU: the kept pass, GPU work queued rather than waited for). */
  latencyMs: number;
  /** Wall time of the edit and every panel's scoring, all passes included. */
  stepMs: number;
  /** How many times that step ran (1, or more where reads settle in passes: settledReads.ts). */
  passes: number;
  before: TopToken[];
  after: TopToken[];
  probes: ProbeResult[];
  layers: LayerUpdate[];
  /** MEND's factors per token of the edited weights (MEND and MEND-cal only). */
  tokens: TokenFactorRow[];
  drift: DriftMap;
  stream: StreamState | null;
}

/** The fixed facts whose answers stream mode watches (one per relation and every 9th subject). */
function localityFacts(world: World): { prompt: string; target: string }[] {
  return world.facts.filter((_, i) => i % 9 === 0).slice(0, 60).map((f) => ({ prompt: world.prompts(f.subject, f.relation, "heldout")[0], target: f.object }));
}

export class Lab {
  private readonly methods = new Map<string, EditMethod>();
  private ledger: EditLedger | null = null;
  private readonly watch: { prompt: string; target: string }[];
  private watchBase: boolean[] | null = null;

  constructor(readonly model: Model, readonly editor: Editor, readonly world: World, readonly config: LabConfig, readonly reads: Reads = directReads) {
    this.watch = localityFacts(world);
  }

  /** The registry's method, built on first use (AlphaEdit computes its preserved keys then). */
  async method(name: string): Promise<EditMethod> {
    if (!(LAB_METHODS as readonly string[]).includes(name)) throw new Error(`unknown method "${name}"; the lab offers ${LAB_METHODS.join(", ")}`);
    let m = this.methods.get(name);
    if (!m) {
      const context = { editor: this.editor, cacheThreshold: this.config.cacheThreshold, cacheKeying: this.config.cacheKeying, ...worldMethodContext(this.world, this.model) };
      m = await this.reads(() => buildMethods([name], context)[0], (built) => built.dispose?.());
      this.methods.set(name, m);
    }
    return m;
  }

  /** Throws a message naming the words the model does not know (and suggestions). */
  checkWords(request: EditRequest): void {
    if (!request.prompt.trim()) throw new Error("the prompt is empty");
    if (!request.target.trim()) throw new Error("the target is empty");
    this.model.tokenizer.encode(request.prompt);
    this.model.tokenizer.encode(request.target);
  }

  /** Edit the base model (single) or the stream's current model (stream) and describe the result. */
  async edit(request: EditRequest, methodName: string, mode: "single" | "stream" = "single"): Promise<EditView> {
    this.checkWords(request);
    if (methodName === "AlphaEdit") this.checkNotPreserved(request);
    if (mode === "stream" && methodName === "cache") throw new Error("the cache keeps no weight update, so it has no place in an edit ledger: use it in single-edit mode");
    const method = await this.method(methodName);
    const pre: EditedModel = mode === "stream" && this.ledger ? this.ledger.model() : this.model;
    let e: MethodEdit | null = null;
    try {
      const t0 = performance.now();
      let view: EditView;
      ({ e, view } = await this.reads(
        () => {
          const edited = method.edit(pre, [request]);
          try {
            return { e: edited, view: this.describe(request, method.name, pre, edited) };
          } catch (err) {
            disposeMethodEdit(edited);
            throw err;
          }
        },
        (pass) => disposeMethodEdit(pass.e),
      ));
      view.stepMs = performance.now() - t0;
      view.passes = this.reads.lastPasses;
      if (mode === "stream") {
        if (!e.update) throw new Error(`${method.name} returned no weight update to record`);
        this.ledger ??= EditLedger.start(this.model);
        this.ledger.add({ method: method.name, requests: [request], update: e.update, state: e.state, latencyMs: e.latencyMs });
        e = { ...e, update: undefined, state: undefined }; // the ledger owns them now
        view.stream = await this.streamState();
      } else {
        view.stream = null;
      }
      return view;
    } finally {
      if (e) disposeMethodEdit(e);
      if (pre !== this.model) pre.dispose();
    }
  }

  /**
   * AlphaEdit keeps the outputs of its preserved facts (the training split's subjects, as in `mend
   * eval`) where they are, so it cannot move one of them: say so before editing, with a fact it can.
   */
  private checkNotPreserved(request: EditRequest): void {
    const train = new Set(this.world.splits(0).train);
    const m = this.world.matchPrompt(request.prompt);
    if (!m || !train.has(m.fact.subject)) return;
    const other = this.world.facts.find((f) => !train.has(f.subject) && f.relation === m.fact.relation);
    const example = other ? ` (e.g. "${this.world.prompts(other.subject, other.relation, "train")[0]}")` : "";
    throw new Error(`AlphaEdit preserves the answers of the training-split subjects' facts (its null space), and ${m.fact.subject} is one of them, so it cannot edit this fact: choose a fact of another subject${example}, or another method`);
  }

  /** Undo the stream's newest edit; the model is then W0 plus the others, exactly (ledger.ts). */
  async undo(): Promise<StreamState> {
    const last = this.ledger?.entries.at(-1);
    if (!this.ledger || !last) throw new Error("nothing to undo: the stream has no edit");
    this.ledger.remove(last.id);
    return this.streamState();
  }

  /** The model the stream has reached (the base model when the stream is empty); the caller disposes it. */
  streamModel(): EditedModel {
    return this.ledger ? this.ledger.model() : applyUpdates(this.model, []);
  }

  /** The top-k next tokens after `prompt` of the model the stream has reached. */
  async streamTop(prompt: string, k = 5): Promise<TopToken[]> {
    const m = this.streamModel();
    try {
      return await this.reads(() => nextTokenTopK(m, [prompt], k)[0].top.map((t) => ({ token: t.token, prob: t.prob })), () => {});
    } finally {
      m.dispose();
    }
  }

  /** Forget the stream (its updates are freed). */
  clearStream(): void {
    this.ledger?.dispose();
    this.ledger = null;
  }

  dispose(): void {
    this.clearStream();
    for (const m of this.methods.values()) m.dispose?.();
    this.methods.clear();
    disposeEditor(this.editor);
    this.model.dispose();
  }

  private async streamState(): Promise<StreamState> {
    const entries = this.ledger?.entries ?? [];
    const current = this.streamModel();
    try {
      const { base, held, now } = await this.reads(() => {
        const base = this.watchBase ?? scoreTargets(this.model, this.watch).map((s) => s.exact);
        const held = entries.length ? scoreTargets(current, entries.map((x) => x.requests[0])).filter((s) => s.exact).length / entries.length : 1;
        return { base, held, now: scoreTargets(current, this.watch).map((s) => s.exact) };
      }, () => {});
      this.watchBase = base;
      const locality = now.filter((x, i) => x === base[i]).length / now.length;
      return { edits: entries.map((x) => ({ id: x.id, method: x.method, prompt: x.requests[0].prompt, target: x.requests[0].target })), retention: held, locality };
    } finally {
      current.dispose();
    }
  }

  private describe(request: EditRequest, method: string, pre: EditedModel, e: MethodEdit): EditView {
    const top = (m: EditedModel) => nextTokenTopK(m, [request.prompt], 5)[0].top.map((t) => ({ token: t.token, prob: t.prob }));
    const probes = runProbes(pre, e.model, probesFor(this.world, [request], [], 3));
    return {
      request,
      method,
      backend: tf.getBackend(),
      latencyMs: e.latencyMs,
      stepMs: NaN, // set by edit()
      passes: 0,
      before: top(pre),
      after: top(e.model),
      probes,
      layers: e.update ? layerUpdates(pre, e.update) : [],
      tokens: method === "MEND" || method === "MEND-cal" ? factorsByToken(pre as Model, this.editor, request) : [],
      drift: this.drift(request, pre, e.model),
      stream: null,
    };
  }

  /** Δ p(answer) over the edited subject's kind: its relations × the subject and five others. */
  private drift(request: EditRequest, pre: EditedModel, post: EditedModel): DriftMap {
    const m = this.world.matchPrompt(request.prompt);
    const type = m ? this.world.subjects.find((s) => s.name === m.fact.subject)?.type ?? "country" : "country";
    const others = this.world.subjects.filter((s) => s.type === type && s.name !== m?.fact.subject).slice(0, m ? 5 : 6).map((s) => s.name);
    const subjects = m ? [m.fact.subject, ...others] : others;
    const relations = this.world.relations.filter((r) => this.world.spec.relations[r].subject_type === type);
    const pairs = relations.flatMap((r) => subjects.map((s) => this.world.fact(s, r)!));
    const texts = pairs.map((f) => ({ prompt: this.world.prompts(f.subject, f.relation, "train")[0], target: f.object }));
    const p = (mod: EditedModel) => scoreTargets(mod, texts).map((s) => Math.exp(s.logProb / s.argmax.length));
    const [a, b] = [p(pre), p(post)];
    const change = relations.map((r, i) =>
      subjects.map((s, j) => (m && r === m.fact.relation && s === m.fact.subject ? NaN : b[i * subjects.length + j] - a[i * subjects.length + j])),
    );
    return { relations, subjects, change, edited: m ? { relation: m.fact.relation, subject: m.fact.subject } : null };
  }
}

/** ‖ΔW‖_F / ‖W‖_F per weight an update touches. */
function layerUpdates(model: EditedModel, update: ModelUpdate): LayerUpdate[] {
  const params = (model as Model).params;
  return Object.entries(update).map(([weight, d]) => {
    const r = tf.tidy(() => {
      const dw = denseDelta(d);
      return tf.div(tf.norm(dw), tf.norm(params[weight])).dataSync()[0];
    });
    return { weight, relative: r };
  });
}

/**
 * The lab from the bytes of the model folder, the editor folder and the world file (each checked
 * by the caller against its manifest), and the build's lab.json; `reads` as the lab's steps read.
 */
export function labFromFiles(modelFiles: Readonly<Record<string, Uint8Array>>, editorFiles: Readonly<Record<string, Uint8Array>>, world: WorldFile, config: LabConfig, where = { model: "checkpoints/base", editor: "checkpoints/editor" }, reads: Reads = directReads): Lab {
  if (!config || !(Number.isFinite(config.cacheThreshold) && config.cacheThreshold > 0)) throw new Error(`lab.json: "cacheThreshold" must be a positive number, got ${JSON.stringify(config?.cacheThreshold)}`);
  const k = config.cacheKeying;
  if (k !== undefined && !(k && (k.pooling === "mean" || k.pooling === "last") && Number.isSafeInteger(k.layer) && k.layer >= 0)) throw new Error(`lab.json: "cacheKeying" must be {"pooling": "mean" or "last", "layer": a block index}, got ${JSON.stringify(k)}`);
  const model = modelFromFiles(modelFiles, where.model);
  try {
    const editor = editorFromFiles(editorFiles, where.editor, model.config, model.params);
    return new Lab(model, editor, new World(world), config, reads);
  } catch (e) {
    model.dispose();
    throw e;
  }
}
