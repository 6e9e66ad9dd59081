/**
 * What a stream method remembers, checked against the edit ledger it was read with: a method state
 * (languageModel.ts `MethodState`) saved in a ledger must be the one its own edits made. Files that
 * were both rewritten (edits.json and a manifest made to match) could otherwise plant a request no
 * edit made (LocFT-BF tunes every remembered request again on its next edit) or claim more edits than
 * the ledger holds; and an undo that kept a later state would leave the undone request in it, which
 * is why `mend ledger --undo` refuses where a later state was computed with the undone edit
 * (`stateCarriedPast`) and `--replay` makes the later edits again instead.
 *
 * A method's state passes from one edit to the next of the same method; another method in between, or
 * an undo of the newest edit (its state is not saved), starts it afresh (the CLI says so before
 * editing). Each entry records the edit its state was carried on from (`stateFrom`), so the state
 * of an entry was made by the chain of edits those links name.
 */
import type { LedgerEntry } from "../model/editLedger";
import { ALPHA_EDIT } from "./alphaEdit";
import { LOC_FT_BF, rememberedRequests } from "./locFtBf";
import { ULTRA_EDIT } from "./ultraEdit";
import { fieldError, isJsonObject } from "../model/jsonFile";
import { isLowRank, WeightDelta } from "../model/weightUpdate";

/**
 * For each entry, the index of the entry whose state its method started from, or -1: the recorded
 * `stateFrom` (an error when it names an edit the ledger does not hold or one of another method), or
 * in a ledger written before it was recorded, the entry before when it is of the same method.
 */
function statePredecessors(entries: readonly LedgerEntry[], where: string): number[] {
  const indexOf = new Map(entries.map((e, i) => [e.id, i]));
  return entries.map((e, j) => {
    if (e.stateFrom === undefined) return j > 0 && entries[j - 1].method === e.method ? j - 1 : -1;
    if (e.stateFrom === null) return -1;
    const i = indexOf.get(e.stateFrom);
    if (i === undefined || entries[i].method !== e.method) throw new Error(`${where}: edit ${e.id}'s ${e.method} state is recorded as carried on from edit ${e.stateFrom}, ${i === undefined ? "which the ledger does not hold" : `a ${entries[i].method} edit`}; the ledger was changed after it was saved`);
    return i;
  });
}

/** The edits whose state entry `i`'s state carries, oldest first, ending with entry `i` (`pred`: `statePredecessors`). */
function chainEndingAt(entries: readonly LedgerEntry[], pred: readonly number[], i: number): LedgerEntry[] {
  const chain: LedgerEntry[] = [];
  for (let j = i; j >= 0; j = pred[j]) chain.unshift(entries[j]);
  return chain;
}

/**
 * Throws when an entry's saved state is not what its edits made: LocFT-BF's remembered requests must
 * be exactly the requests of its run of edits, AlphaEdit's edit count (per weight) its length,
 * UltraEdit's row count (per weight) the key rows its edits added; a key-value state is kept for
 * exactly the weights its entry changed.
 * `where` names the ledger in errors.
 */
export function checkLedgerStates(entries: readonly LedgerEntry[], where: string): void {
  const pred = statePredecessors(entries, where);
  entries.forEach((e, i) => {
    if (!e.state) return;
    const chain = chainEndingAt(entries, pred, i);
    const ids = chain.map((x) => x.id).join(", ");
    if (e.method === LOC_FT_BF) {
      const r = e.state.meta.requests;
      if (!Array.isArray(r) || !r.every((q) => isJsonObject(q) && typeof q.prompt === "string" && typeof q.target === "string")) {
        throw fieldError(where, `edit ${e.id}'s ${LOC_FT_BF} state.meta.requests`, 'a list of {"prompt", "target"} strings (the requests it tunes again)', r);
      }
      const made = chain.flatMap((x) => x.requests);
      const kept = rememberedRequests(e.state);
      const k = kept.findIndex((r, j) => !made[j] || r.prompt !== made[j].prompt || r.target !== made[j].target);
      if (k >= 0 || kept.length !== made.length) {
        const odd = k >= 0 ? `; request ${k + 1} it remembers, "${kept[k].prompt}" -> "${kept[k].target}", ${made[k] ? `is "${made[k].prompt}" -> "${made[k].target}" in the ledger` : "was made by no edit"}` : "";
        throw new Error(`${where}: edit ${e.id}'s ${LOC_FT_BF} state remembers ${kept.length} request(s), but its edits (${ids}) made ${made.length}${odd}; the ledger was changed after it was saved`);
      }
    }
    if (e.method === ALPHA_EDIT || e.method === ULTRA_EDIT) {
      const metas = keyValueMetas(e, where);
      checkStateTensors(e, Object.keys(metas), where);
      if (e.method === ALPHA_EDIT) {
        for (const [w, m] of Object.entries(metas)) if (!Number.isSafeInteger(m.edits)) throw fieldError(where, `edit ${e.id}'s ${ALPHA_EDIT} state count of ${w}`, "a whole number of edits", m.edits);
        const counts = Object.values(metas).map((m) => m.edits);
        if (counts.some((n) => n !== chain.length)) throw new Error(`${where}: edit ${e.id}'s ${ALPHA_EDIT} state counts ${counts.join(", ")} edit(s), but its run of ${ALPHA_EDIT} edits (${ids}) has ${chain.length}; the ledger was changed after it was saved`);
      } else {
        // UltraEdit's running statistics count the key rows of every edit of its run, per weight.
        for (const [w, m] of Object.entries(metas)) {
          const rows = chain.reduce((n, x) => n + editRows(x), 0);
          if (!Number.isSafeInteger(m.count)) throw fieldError(where, `edit ${e.id}'s ${ULTRA_EDIT} state count of ${w}`, "a whole number of key rows", m.count);
          if (m.count !== rows) throw new Error(`${where}: edit ${e.id}'s ${ULTRA_EDIT} state counts ${JSON.stringify(m.count)} key row(s) of ${w}, but its run of ${ULTRA_EDIT} edits (${ids}) made ${rows}; the ledger was changed after it was saved`);
        }
      }
    }
  });
}

/** The tensors a key-value method keeps per weight [d_in, d_out] (alphaEdit.ts, ultraEdit.ts), by their shapes. */
const STATE_TENSORS: Readonly<Record<string, (dIn: number, dOut: number) => Record<string, number[]>>> = {
  [ALPHA_EDIT]: (dIn) => ({ a_inv: [dIn, dIn] }),
  [ULTRA_EDIT]: (dIn, dOut) => ({ u_mean: [dIn], u_m2: [dIn], delta_mean: [dOut], delta_m2: [dOut] }),
};

/** Throws unless entry `e`'s state holds exactly its method's tensors for each of `weights`, of their shapes. */
function checkStateTensors(e: LedgerEntry, weights: readonly string[], where: string): void {
  const want: Record<string, number[]> = {};
  for (const w of weights) {
    const d = e.update[w];
    if (!d || !isLowRank(d)) throw new Error(`${where}: edit ${e.id}'s ${e.method} change of ${w} is not a key-value update`);
    const named = STATE_TENSORS[e.method](d.keys.shape[1], d.values.shape[1]);
    for (const [k, shape] of Object.entries(named)) want[weights.length > 1 ? `${w}/${k}` : k] = shape;
  }
  const have = e.state!.tensors;
  const missing = Object.keys(want).filter((k) => !Object.prototype.hasOwnProperty.call(have, k));
  const extra = Object.keys(have).filter((k) => !Object.prototype.hasOwnProperty.call(want, k));
  if (missing.length || extra.length) throw new Error(`${where}: edit ${e.id}'s ${e.method} state must hold the tensors ${Object.keys(want).join(", ")}${missing.length ? `; ${missing.join(", ")} missing` : ""}${extra.length ? `; ${extra.join(", ")} not its own` : ""}; the ledger was changed after it was saved`);
  for (const [k, shape] of Object.entries(want)) {
    if (have[k].shape.join("x") !== shape.join("x")) throw new Error(`${where}: edit ${e.id}'s ${e.method} state tensor ${k} has shape [${have[k].shape}], expected [${shape}]; the ledger was changed after it was saved`);
  }
}

/**
 * The rows a key-value edit added to its statistics: its lowest weight's key rows (keyValueEdit.ts:
 * an upper weight's update stacks one piece of the same rows per step), the fewest of any weight.
 */
function editRows(e: LedgerEntry): number {
  const rows = Object.values(e.update).map((d: WeightDelta) => (isLowRank(d) ? d.keys.shape[0] : 0));
  return rows.length ? Math.min(...rows) : 0;
}

/**
 * A key-value method's state meta by weight (keyValueEdit.ts: one weight's state is the rule's own, several
 * are keyed by weight name); throws unless its weights are the ones the entry edited.
 */
function keyValueMetas(e: LedgerEntry, where: string): Record<string, Record<string, unknown>> {
  const weights = Object.keys(e.update);
  const meta = e.state!.meta;
  const keyed = Object.keys(meta).length > 0 && Object.keys(meta).every((k) => /\.weight$/.test(k));
  const metas = (keyed || weights.length > 1 ? meta : { [weights[0]]: meta }) as Record<string, Record<string, unknown>>;
  const kept = Object.keys(metas);
  if (kept.length !== weights.length || kept.some((w) => !weights.includes(w) || !isJsonObject(metas[w]))) {
    throw new Error(`${where}: edit ${e.id}'s ${e.method} state is kept for ${kept.join(", ") || "no weight"}, but the edit changed ${weights.join(", ")}; the ledger was changed after it was saved`);
  }
  return metas;
}

/**
 * The later entries whose method state was computed with edit `id` (their chain of carried states
 * passes through it, when it left a state): undoing `id` alone would keep it in their state.
 */
export function stateCarriedPast(entries: readonly LedgerEntry[], id: number, where = "the ledger"): LedgerEntry[] {
  const i = entries.findIndex((e) => e.id === id);
  if (i < 0 || !(entries[i].state || entries[i].stateOmitted)) return [];
  // links point backwards, so one pass in order finds every entry whose chain reaches i
  const pred = statePredecessors(entries, where);
  const carries = entries.map(() => false);
  for (let j = i + 1; j < entries.length; j++) carries[j] = pred[j] === i || (pred[j] > i && carries[pred[j]]);
  return entries.filter((_, j) => carries[j]);
}
