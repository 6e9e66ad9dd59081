/**
 * What the edit ledger (model/editLedger.ts) cannot do alone, because it needs the methods or the
 * questions to ask:
 *
 *  - `replayWithout`: the stream recomputed without one edit: the edits before it are kept as they
 *    are, every later edit is made again by its method on the model without the removed one. Undo
 *    (W0 + the remaining updates) and replay differ because the later updates were computed on a
 *    model that contained the removed edit. A ledger read from a folder keeps only its newest
 *    state: when the edit before the removed one lost its state, the replay makes every edit but
 *    the removed one again, from the first (the same updates for the edits before it, recomputed);
 *  - `diffAnswers`: the prompts whose greedy answers differ between two models.
 */
import { EditLedger } from "../model/editLedger";
import type { LanguageModel } from "../model/languageModel";
import { greedyContinuation } from "../model/score";
import type { EditMethod } from "./methods";

/**
 * A new ledger: the entries of `ledger` before edit `id`, then each later entry's requests edited
 * again by `methodOf(entry.method)`, keeping its id (from the first entry on when the one before
 * `id` has no saved state: `EditLedger.stateOmitted`). The caller owns the result (and the methods).
 */
export function replayWithout(ledger: EditLedger, id: number, methodOf: (name: string) => EditMethod): EditLedger {
  const all = ledger.entries;
  const from = replayStart(ledger, id);
  const out = ledger.prefixBefore(all[from].id);
  try {
    for (const e of all.slice(from).filter((x) => x.id !== id)) {
      const current = out.model();
      try {
        const r = methodOf(e.method).edit(current, e.requests);
        r.model.dispose(); // the ledger keeps the update; its model is recomputed from W0
        if (!r.update) throw new Error(`method ${e.method} made no weight update; only weight edits can be replayed`);
        out.add({ method: e.method, requests: e.requests, update: r.update, ...(r.state ? { state: r.state } : {}), latencyMs: r.latencyMs }, e.id);
      } finally {
        current.dispose();
      }
    }
  } catch (err) {
    out.dispose();
    throw err;
  }
  return out;
}

/** The index of the first entry `replayWithout(ledger, id)` makes again: edit `id`'s, or 0 when the entry before it has no saved state. */
export function replayStart(ledger: EditLedger, id: number): number {
  const all = ledger.entries;
  const i = all.findIndex((e) => e.id === id);
  if (i < 0) throw new Error(`no edit ${id} in the ledger (edits: ${all.map((e) => e.id).join(", ") || "none"})`);
  return i > 0 && all[i - 1].stateOmitted ? 0 : i;
}

export interface AnswerChange {
  prompt: string;
  before: string;
  after: string;
}

/** The prompts whose greedy answer (`maxTokens` tokens) differs between models `a` and `b`. */
export function diffAnswers(a: LanguageModel, b: LanguageModel, prompts: readonly string[], maxTokens = 3): AnswerChange[] {
  const x = greedyContinuation(a, prompts, maxTokens);
  const y = greedyContinuation(b, prompts, maxTokens);
  return prompts.flatMap((prompt, i) => (x[i] !== y[i] ? [{ prompt, before: x[i], after: y[i] }] : []));
}
