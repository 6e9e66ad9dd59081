/**
 * The edit ledger: a base model W0 and every edit applied to it, in order, each with its request(s),
 * the method that made it, its update ΔW as a value (weightUpdate.ts) and the state the method
 * carried on from it (languageModel.ts `MethodState`: the keys of earlier edits, running
 * statistics, ...). The edited model is always W0 + ΔW_1 + ... + ΔW_n, recomputed from W0: removing
 * an edit gives exactly W0 plus the remaining updates (later updates were computed on a model that
 * contained the removed one; replaying the stream without it is the evaluation layer's job).
 *
 * Saved beside an edited model's own files (a model folder any command can load):
 *
 *   edits.json          the entries (method, requests, time, the layout of each update and state)
 *                       and the base model's fingerprint;
 *   edits.safetensors   the update and state tensors, `e<id>/<weight>/{keys,values,delta}` and
 *                       `e<id>/state/<name>`: the newest entry's state only (the one the next edit
 *                       reads; an AlphaEdit state holds a d_in x d_in matrix per weight). An older
 *                       entry keeps its state's meta; its tensors are "omitted" (`stateOmitted`).
 *
 * Loading checks the ledger against the weights: the base must have the recorded fingerprint, and
 * W0 + every update must equal the saved weights exactly.
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import type { TextExample as EditRequest } from "./batch";
import { loadModel, Model, saveModel } from "./modelFolder";
import { paramsFingerprint } from "./gpt";
import type { MethodState } from "./languageModel";
import { applyUpdates, ModelView, ParamsModel } from "./paramsModel";
import { decodeSafetensors, encodeSafetensors, RawTensor } from "./safetensors";
import { DenseDelta, disposeUpdate, isLowRank, LowRankDelta, ModelUpdate, updateTensors } from "./weightUpdate";
import { field, fieldError, isJsonObject, parseJson } from "./jsonFile";
import { readConsistently, recoverForRead } from "./checkpointFolder";

export interface LedgerEntry {
  /** 1, 2, ... in the order the edits were applied; never reused. */
  readonly id: number;
  readonly method: string;
  readonly requests: readonly EditRequest[];
  /** ΔW of the edit (owned by the ledger). */
  readonly update: ModelUpdate;
  /** The state the method carried on from this edit (owned by the ledger). */
  readonly state?: MethodState;
  /** Read from a folder that saved only a newer entry's state: this edit had a state, not kept. */
  readonly stateOmitted?: boolean;
  /**
   * The edit whose state this edit's method started from (null: it started afresh). Absent in
   * ledgers written before it was recorded, where a run of edits of one method carried one state.
   */
  readonly stateFrom?: number | null;
  readonly latencyMs: number;
  /** ISO time the edit was recorded. */
  readonly time: string;
}

/** edits.json */
interface LedgerFile {
  format: "mend-ts-edits";
  /** W0's fingerprint, and the folder it was loaded from when the ledger started (absolute; a default for --base). */
  base: { fingerprint: string; path?: string };
  next_id: number;
  entries: {
    id: number;
    method: string;
    requests: EditRequest[];
    latency_ms: number;
    time: string;
    update: Record<string, { alpha: number; rows: number; requests: number[] } | { dense: true }>;
    state?: { method: string; meta: Record<string, unknown>; tensors: string[]; omitted?: true };
    state_from?: number | null;
  }[];
}

export const LEDGER_FILES = ["edits.json", "edits.safetensors"] as const;

/** edits.json checked as data: every field of the right type, ids increasing, next_id above them; errors name the file and field. */
function checkedLedgerFile(x: unknown, file: string): LedgerFile {
  const obj = isJsonObject;
  const bad = (name: string, want: string, got: unknown) => fieldError(file, name, want, got);
  if (!obj(x) || x.format !== "mend-ts-edits") throw new Error(`${file}: not a mend-ts edit ledger (its "format" must be "mend-ts-edits")`);
  if (!obj(x.base) || !field.sha256.ok(x.base.fingerprint)) throw bad("base.fingerprint", "a SHA-256 in hex", obj(x.base) ? x.base.fingerprint : x.base);
  if (x.base.path !== undefined && (typeof x.base.path !== "string" || !path.isAbsolute(x.base.path))) throw bad("base.path", "an absolute folder path or absent", x.base.path);
  if (!Array.isArray(x.entries)) throw bad("entries", "a list", x.entries);
  let last = 0;
  x.entries.forEach((e: unknown, i: number) => {
    const at = `entries[${i}]`;
    if (!obj(e)) throw bad(at, "an object", e);
    if (!Number.isSafeInteger(e.id) || (e.id as number) <= last) throw bad(`${at}.id`, `an integer above ${last} (ids increase)`, e.id);
    last = e.id as number;
    if (typeof e.method !== "string" || !e.method) throw bad(`${at}.method`, "a method name", e.method);
    if (!Array.isArray(e.requests) || e.requests.length === 0 || !e.requests.every((r) => obj(r) && typeof r.prompt === "string" && typeof r.target === "string" && r.prompt.trim() !== "" && r.target.trim() !== "")) throw bad(`${at}.requests`, 'a non-empty list of {"prompt", "target"} non-empty strings (as every edit made them)', e.requests);
    if (typeof e.latency_ms !== "number" || !Number.isFinite(e.latency_ms) || e.latency_ms < 0) throw bad(`${at}.latency_ms`, "a number of milliseconds", e.latency_ms);
    if (typeof e.time !== "string") throw bad(`${at}.time`, "an ISO time", e.time);
    if (!obj(e.update) || Object.keys(e.update).length === 0) throw bad(`${at}.update`, "an object of weight name -> update", e.update);
    const nReq = e.requests.length;
    for (const [name, d] of Object.entries(e.update)) {
      const f = `${at}.update["${name}"]`;
      if (!obj(d)) throw bad(f, "an object", d);
      if ("dense" in d) {
        if (d.dense !== true) throw bad(`${f}.dense`, "true (a dense update) or absent", d.dense);
        continue;
      }
      if (typeof d.alpha !== "number" || !Number.isFinite(d.alpha)) throw bad(`${f}.alpha`, "a number", d.alpha);
      if (!Number.isSafeInteger(d.rows) || (d.rows as number) < 1) throw bad(`${f}.rows`, "a positive integer", d.rows);
      if (!Array.isArray(d.requests) || d.requests.length !== d.rows || !d.requests.every((q) => Number.isSafeInteger(q) && q >= 0 && q < nReq)) throw bad(`${f}.requests`, `a list of ${d.rows} request indices below ${nReq}`, d.requests);
    }
    if (e.state !== undefined) {
      const st = e.state;
      if (!obj(st) || typeof st.method !== "string" || !obj(st.meta) || !Array.isArray(st.tensors)) throw bad(`${at}.state`, 'an object {"method", "meta", "tensors": [names]}', st);
      if (!st.tensors.every((k) => typeof k === "string" && k !== "") || new Set(st.tensors).size !== st.tensors.length) throw bad(`${at}.state.tensors`, "a list of distinct tensor names", st.tensors);
      if (st.omitted !== undefined && st.omitted !== true) throw bad(`${at}.state.omitted`, "true or absent", st.omitted);
    }
    const from = e.state_from;
    if (from !== undefined && from !== null && !(Number.isSafeInteger(from) && (from as number) >= 1 && (from as number) < (e.id as number))) throw bad(`${at}.state_from`, `null, absent or an earlier edit's id (below ${e.id})`, from);
    if (from !== undefined && e.state === undefined) throw bad(`${at}.state_from`, "absent (the edit kept no state)", from);
  });
  if (!Number.isSafeInteger(x.next_id) || (x.next_id as number) <= last) throw bad("next_id", `an integer above every entry's id (${last})`, x.next_id);
  return x as unknown as LedgerFile;
}

const raw = (t: tf.Tensor): RawTensor => ({ dtype: "F32", shape: t.shape, data: t.dataSync() as Float32Array });

export class EditLedger {
  private nextId: number;

  private constructor(readonly base: ModelView, readonly baseFingerprint: string, private readonly list: LedgerEntry[], nextId: number, readonly basePath?: string) {
    this.nextId = nextId;
  }

  /**
   * An empty ledger over a base model (W0), which it reads and never changes or frees; `basePath`:
   * the folder W0 was loaded from, recorded so that later readers find it without --base.
   */
  static start(base: ModelView, basePath?: string): EditLedger {
    return new EditLedger(base, paramsFingerprint(base.params), [], 1, basePath && path.resolve(basePath));
  }

  get entries(): readonly LedgerEntry[] {
    return this.list;
  }

  /**
   * Record an edit; the ledger takes ownership of its update and state. `id` (a replay recomputing
   * an entry keeps its id) must be above every recorded one; by default the next free id.
   */
  add(e: { method: string; requests: readonly EditRequest[]; update: ModelUpdate; state?: MethodState; latencyMs: number }, id?: number): LedgerEntry {
    const last = this.list[this.list.length - 1]?.id ?? 0;
    if (id !== undefined && !(Number.isSafeInteger(id) && id > last)) throw new Error(`edit id ${id} must be an integer above the last recorded id ${last}`);
    // The edit was made on `model()`, which carries the newest entry's state: a method's next edit starts from it.
    const prev = this.list[this.list.length - 1];
    const stateFrom = prev && prev.method === e.method && prev.state ? prev.id : null;
    const entry: LedgerEntry = { id: id ?? this.nextId++, method: e.method, requests: [...e.requests], update: e.update, ...(e.state ? { state: e.state, stateFrom } : {}), latencyMs: e.latencyMs, time: new Date().toISOString() };
    this.list.push(entry);
    return entry;
  }

  /**
   * W0 + every recorded update, in order: a new model that owns its weights and a copy of the last
   * entry's state (the state the next edit of its method reads).
   */
  model(): ParamsModel {
    const last = this.list[this.list.length - 1]?.state;
    const state = last && { method: last.method, meta: { ...last.meta }, tensors: Object.fromEntries(Object.entries(last.tensors).map(([k, t]) => [k, tf.clone(t)])) };
    return applyUpdates(this.base, this.list.map((e) => e.update), state);
  }

  /** Remove edit `id` and free its tensors; `model()` is then W0 plus the other updates. */
  remove(id: number): LedgerEntry {
    const [e] = this.list.splice(this.indexOf(id), 1);
    disposeUpdate(e.update);
    tf.dispose(Object.values(e.state?.tensors ?? {}));
    return e;
  }

  dispose(): void {
    for (const e of this.list) {
      disposeUpdate(e.update);
      tf.dispose(Object.values(e.state?.tensors ?? {}));
    }
    this.list.length = 0;
  }

  /** edits.json and edits.safetensors. */
  files(): Record<(typeof LEDGER_FILES)[number], Buffer> {
    const tensors: Record<string, RawTensor> = {};
    const file: LedgerFile = { format: "mend-ts-edits", base: { fingerprint: this.baseFingerprint, ...(this.basePath ? { path: this.basePath } : {}) }, next_id: this.nextId, entries: [] };
    this.list.forEach((e, i) => {
      const newest = i === this.list.length - 1;
      const update: LedgerFile["entries"][number]["update"] = {};
      for (const [name, d] of Object.entries(e.update)) {
        if (isLowRank(d)) {
          tensors[`e${e.id}/${name}/keys`] = raw(d.keys);
          tensors[`e${e.id}/${name}/values`] = raw(d.values);
          update[name] = { alpha: d.alpha, rows: d.keys.shape[0], requests: [...d.requests] };
        } else {
          tensors[`e${e.id}/${name}/delta`] = raw(d.delta);
          update[name] = { dense: true };
        }
      }
      const names = Object.keys(e.state?.tensors ?? {});
      if (newest) for (const k of names) tensors[`e${e.id}/state/${k}`] = raw(e.state!.tensors[k]);
      const omitted = (!newest && names.length > 0) || e.stateOmitted === true;
      file.entries.push({
        id: e.id,
        method: e.method,
        requests: [...e.requests],
        latency_ms: e.latencyMs,
        time: e.time,
        update,
        ...(e.state || omitted ? { state: { method: e.state?.method ?? e.method, meta: { ...e.state?.meta }, tensors: omitted ? [] : names, ...(omitted ? { omitted: true as const } : {}) } } : {}),
        ...(e.stateFrom !== undefined ? { state_from: e.stateFrom } : {}),
      });
    });
    return { "edits.json": Buffer.from(JSON.stringify(file, null, 1) + "\n"), "edits.safetensors": encodeSafetensors(tensors, { format: "mend-ts-edits" }) };
  }

  /**
   * The ledger saved as `files` (edits.json, edits.safetensors) over `base`, checked: the base's
   * fingerprint must be the recorded one, and, given the saved model's `weights`, W0 + every update
   * must equal them exactly. `where` names the folder in errors.
   */
  static fromFiles(files: Record<string, Buffer>, base: ModelView, where: string, weights?: Readonly<Record<string, tf.Tensor>>): EditLedger {
    const file = checkedLedgerFile(parseJson(files["edits.json"].toString("utf8"), `${where}/edits.json`), `${where}/edits.json`);
    const fp = paramsFingerprint(base.params);
    if (fp !== file.base.fingerprint) throw new Error(`${where}: its edits were made to the base model with fingerprint ${file.base.fingerprint.slice(0, 12)}, not to this one (${fp.slice(0, 12)}); pass the base model the edits were made to with --base DIR`);
    const { tensors } = decodeSafetensors(files["edits.safetensors"], `${where}/edits.safetensors`);
    const take = (key: string, shape?: readonly (number | null)[]): tf.Tensor => {
      const t = Object.prototype.hasOwnProperty.call(tensors, key) ? tensors[key] : undefined;
      if (!t) throw new Error(`${where}/edits.safetensors: missing tensor "${key}"`);
      if (shape && (t.shape.length !== shape.length || shape.some((d, i) => d !== null && d !== t.shape[i]))) throw new Error(`${where}/edits.safetensors: "${key}" has shape [${t.shape}], expected [${shape.map((d) => d ?? "any")}]`);
      if (t.data.some((x) => !Number.isFinite(x))) throw new Error(`${where}/edits.safetensors: "${key}" contains NaN or Inf`);
      return tf.tensor(t.data, t.shape, "float32");
    };
    const ledger = new EditLedger(base, fp, [], file.next_id, file.base.path);
    try {
      for (const e of file.entries) {
        const update: Record<string, LowRankDelta | DenseDelta> = {};
        for (const [name, d] of Object.entries(e.update)) {
          if (!Object.prototype.hasOwnProperty.call(base.params, name)) throw new Error(`${where}/edits.json: edit ${e.id} changes "${name}", which the base model does not have`);
          const [dIn, dOut] = base.params[name].shape;
          update[name] = "dense" in d ? { delta: take(`e${e.id}/${name}/delta`, base.params[name].shape) as tf.Tensor2D } : { alpha: d.alpha, keys: take(`e${e.id}/${name}/keys`, [d.rows, dIn]) as tf.Tensor2D, values: take(`e${e.id}/${name}/values`, [d.rows, dOut ?? null]) as tf.Tensor2D, requests: d.requests };
        }
        const omitted = e.state?.omitted === true;
        const state = e.state && !omitted ? { method: e.state.method, meta: e.state.meta, tensors: Object.fromEntries(e.state.tensors.map((k) => [k, take(`e${e.id}/state/${k}`)])) } : undefined;
        ledger.list.push({ id: e.id, method: e.method, requests: e.requests, update, ...(state ? { state } : {}), ...(omitted ? { stateOmitted: true } : {}), ...(e.state_from !== undefined ? { stateFrom: e.state_from } : {}), latencyMs: e.latency_ms, time: e.time });
      }
      if (weights) {
        const m = ledger.model();
        try {
          for (const [n, w] of Object.entries(m.params)) {
            const saved = weights[n];
            if (!saved) continue;
            const same = tf.tidy(() => tf.all(tf.equal(w, saved)).dataSync()[0] === 1);
            if (!same) throw new Error(`${where}: the saved weight "${n}" is not W0 plus the recorded edits (the folder's weights or its edits.json were changed)`);
          }
        } finally {
          m.dispose();
        }
      }
    } catch (err) {
      ledger.dispose();
      throw err;
    }
    return ledger;
  }

  /**
   * A new ledger over the same base with copies of the entries `keep` selects (ids kept; the next
   * id stays where this ledger's is).
   */
  private copy(keep: (e: LedgerEntry, i: number) => boolean): EditLedger {
    const clone = (u: ModelUpdate): ModelUpdate => Object.fromEntries(Object.entries(u).map(([n, d]) => [n, isLowRank(d) ? { ...d, keys: tf.clone(d.keys), values: tf.clone(d.values) } : { delta: tf.clone(d.delta) }]));
    const entries = this.list.filter(keep).map((e) => ({ ...e, update: clone(e.update), ...(e.state ? { state: { ...e.state, tensors: Object.fromEntries(Object.entries(e.state.tensors).map(([k, t]) => [k, tf.clone(t)])) } } : {}) }));
    return new EditLedger(this.base, this.baseFingerprint, entries, this.nextId, this.basePath);
  }

  private indexOf(id: number): number {
    const i = this.list.findIndex((e) => e.id === id);
    if (i < 0) throw new Error(`no edit ${id} in the ledger (edits: ${this.list.map((e) => e.id).join(", ") || "none"})`);
    return i;
  }

  /** Copies of the entries before edit `id`: the starting point of a replay. */
  prefixBefore(id: number): EditLedger {
    const i = this.indexOf(id);
    return this.copy((_, j) => j < i);
  }

  /** Undo without changing this ledger: copies of every entry but edit `id` (`model()` is W0 plus their updates). */
  without(id: number): EditLedger {
    this.indexOf(id);
    return this.copy((e) => e.id !== id);
  }

  /** Tensors the ledger holds (for memory accounting). */
  tensors(): tf.Tensor[] {
    return this.list.flatMap((e) => [...updateTensors(e.update), ...Object.values(e.state?.tensors ?? {})]);
  }
}

/**
 * Whether a model folder holds an edit ledger (edits.json), after putting back a complete folder
 * that a killed write left aside (as every reader does before its first check).
 */
export function hasLedger(dir: string): boolean {
  recoverForRead(dir);
  return fs.existsSync(path.join(dir, "edits.json"));
}

/** The base folder the ledger of model folder `dir` recorded when it started, if it did (checked edits.json). */
export function recordedBasePath(dir: string): string | undefined {
  const file = path.join(dir, "edits.json");
  return checkedLedgerFile(parseJson(fs.readFileSync(file, "utf8"), file), file).base.path;
}

/**
 * The ledger of the model folder `dir` over `base` (W0), checked against the folder's saved
 * `weights` (loadModel's): the base's fingerprint and W0 + every update = the weights, exactly.
 */
export function readLedger(dir: string, base: ModelView, weights: Readonly<Record<string, tf.Tensor>>): EditLedger {
  const files: Record<string, Buffer> = {};
  for (const n of LEDGER_FILES) {
    const f = path.join(dir, n);
    if (!fs.existsSync(f)) throw new Error(`${dir}: ${n} is missing (an edit ledger is edits.json and edits.safetensors)`);
    files[n] = fs.readFileSync(f);
  }
  return EditLedger.fromFiles(files, base, dir, weights);
}

/**
 * An edited model folder and its ledger over `base`, read as one (`readLedger`'s checks), again if a
 * writer replaced the folder meanwhile (checkpointFolder.ts `readConsistently`). The caller owns both.
 */
export function readLedgerFolder(dir: string, base: ModelView): { model: Model; ledger: EditLedger } {
  return readConsistently(dir, () => {
    const model = loadModel(dir);
    try {
      return { model, ledger: readLedger(dir, base, model.params) };
    } catch (e) {
      model.dispose();
      throw e;
    }
  });
}

/**
 * Save W0 + the ledger's updates as a model folder with its ledger, as one unit (`check`: the output
 * guard, re-run under the folder's lock). The saved weights are the ledger's own sum, so loading
 * finds them equal to it.
 */
export function saveLedgerModel(dir: string, ledger: EditLedger, metadata: Record<string, string>, opts: { check?: () => void } = {}): void {
  const m = ledger.model();
  try {
    saveModel(dir, m, metadata, { ...opts, files: ledger.files() });
  } finally {
    m.dispose();
  }
}
