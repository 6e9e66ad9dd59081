/**
 * What a stream method remembers, checked against the edit ledger it was read with: a method state
 * (languageModel.ts `MethodState`) saved in a ledger must be the one its own edits made. Files that
 * were both rewritten (edits.json and a manifest made to match) could otherwise plant a request no
 * edit made (LocFT-BF tunes every remembered request again on its next edit) or claim more edits than
 * the ledger holds; and an undo that kept a later state would leave the undone request in it, which
 * is why `mend ledger --undo` refuses where a later state was computed with the undone edit
 * (`stateCarriedPast`) and `--replay` makes the later edits again instead.
 *
 * A method's state passes from one edit to the next of the same method; another method in between
 * starts it afresh (the CLI says so before editing), so the state of an entry was made by the run of
 * consecutive entries of its method that ends with it.
 */
import type { LedgerEntry } from "../model/editLedger";
import { ALPHA_EDIT } from "./alphaEdit";
import { LOC_FT_BF, rememberedRequests } from "./locFtBf";

/** The run of consecutive entries of entry `i`'s method that ends with it, oldest first. */
function chainEndingAt(entries: readonly LedgerEntry[], i: number): LedgerEntry[] {
  let from = i;
  while (from > 0 && entries[from - 1].method === entries[i].method) from--;
  return entries.slice(from, i + 1);
}

/**
 * Throws when an entry's saved state is not what its edits made: LocFT-BF's remembered requests must
 * be exactly the requests of its run of edits, AlphaEdit's edit count (per weight) its length.
 * `where` names the ledger in errors.
 */
export function checkLedgerStates(entries: readonly LedgerEntry[], where: string): void {
  entries.forEach((e, i) => {
    if (!e.state) return;
    const chain = chainEndingAt(entries, i);
    const ids = chain.map((x) => x.id).join(", ");
    if (e.method === LOC_FT_BF) {
      const made = chain.flatMap((x) => x.requests);
      const kept = rememberedRequests(e.state);
      const k = kept.findIndex((r, j) => !made[j] || r.prompt !== made[j].prompt || r.target !== made[j].target);
      if (k >= 0 || kept.length !== made.length) {
        const odd = k >= 0 ? `; request ${k + 1} it remembers, "${kept[k].prompt}" -> "${kept[k].target}", ${made[k] ? `is "${made[k].prompt}" -> "${made[k].target}" in the ledger` : "was made by no edit"}` : "";
        throw new Error(`${where}: edit ${e.id}'s ${LOC_FT_BF} state remembers ${kept.length} request(s), but its edits (${ids}) made ${made.length}${odd}; the ledger was changed after it was saved`);
      }
    }
    if (e.method === ALPHA_EDIT) {
      const counts = typeof e.state.meta.edits === "number" ? [e.state.meta.edits] : Object.values(e.state.meta).map((m) => (m as { edits?: unknown })?.edits);
      if (counts.some((n) => n !== chain.length)) throw new Error(`${where}: edit ${e.id}'s ${ALPHA_EDIT} state counts ${counts.join(", ")} edit(s), but its run of ${ALPHA_EDIT} edits (${ids}) has ${chain.length}; the ledger was changed after it was saved`);
    }
  });
}

/**
 * The later entries whose method state was computed with edit `id` (the same method's edits right
 * after it, when it left a state): undoing `id` alone would keep it in their state.
 */
export function stateCarriedPast(entries: readonly LedgerEntry[], id: number): LedgerEntry[] {
  const i = entries.findIndex((e) => e.id === id);
  if (i < 0 || !(entries[i].state || entries[i].stateOmitted)) return [];
  const out: LedgerEntry[] = [];
  for (let j = i + 1; j < entries.length && entries[j].method === entries[i].method; j++) out.push(entries[j]);
  return out;
}
