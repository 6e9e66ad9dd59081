/**
 * Edit records: one editing case as every source of edits gives it (the facts world, zsRE,
 * CounterFact), the input of meta-training (src/mend/metaExamples.ts) and of every evaluation.
 *
 *   prompts           x_e (the first) and its training paraphrases, from which x'_e is drawn;
 *   heldout_prompts   paraphrases used only to evaluate;
 *   locality          texts the edit should not change, tagged by class.
 */

export type LocalityClass = "same_subject" | "same_relation" | "unrelated";
export const LOCALITY_CLASSES: readonly LocalityClass[] = ["same_subject", "same_relation", "unrelated"];
export type Split = "train" | "val" | "test";

export interface LocalityExample {
  class: LocalityClass;
  prompt: string;
  target: string;
  subject: string;
  relation: string;
}

/** One MEND edit case. `prompts` (training templates) give x_e and x_e'; `heldout_prompts` only evaluate. */
export interface EditRecord {
  case_id: number;
  split: Split;
  subject: string;
  relation: string;
  target_true: string;
  target_new: string;
  prompts: string[];
  heldout_prompts: string[];
  locality: LocalityExample[];
}

/**
 * A same-relation locality probe whose answer is the edited fact's old answer ("The official language
 * of Guatemala is Spanish" for an edit of Panama's Spanish): the probes a single MEND edit breaks most.
 */
export function sharesOldAnswer(r: EditRecord, l: LocalityExample): boolean {
  return l.class === "same_relation" && l.target === r.target_true;
}

/** The key of a fact (subject, relation): the same string wherever facts are matched. */
export function factKey(f: { subject: string; relation: string }): string {
  return `${f.subject}|${f.relation}`;
}

/**
 * The first edit record of each fact (subject, relation), in order. A split may hold several edits
 * of one fact (other new targets); one batched edit call cannot make a fact answer two targets.
 */
export function distinctFacts(records: readonly EditRecord[]): EditRecord[] {
  const seen = new Set<string>();
  return records.filter((r) => {
    const k = factKey(r);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** One requested edit: after `prompt`, the model should continue with `target`. */
export interface EditRequest {
  prompt: string;
  target: string;
}

/**
 * Throws on requests that cannot be edited: a field that is not text, an empty prompt or target,
 * one prompt with two targets. `where` names their source ("edits.json") in the messages.
 */
export function validateRequests(requests: readonly EditRequest[], where = "edit request"): void {
  if (!Array.isArray(requests) || requests.length === 0) throw new Error("no edit requests given");
  const targetOf = new Map<string, string>();
  const q = (s: string) => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
  requests.forEach((r, i) => {
    if (!r || typeof r !== "object" || Array.isArray(r)) throw new Error(`${where} ${i}: expected {"prompt": ..., "target": ...}, got ${JSON.stringify(r)?.slice(0, 60)}`);
    for (const k of ["prompt", "target"] as const) if (typeof r[k] !== "string") throw new Error(`${where} ${i}: "${k}" must be text, got ${JSON.stringify(r[k])?.slice(0, 60) ?? "nothing"}`);
    if (!r.prompt.trim()) throw new Error(`${where} ${i}: prompt is empty`);
    if (!r.target.trim()) throw new Error(`${where} ${i} (${q(r.prompt)}): target is empty`);
    const key = r.prompt.normalize("NFC").trim();
    const other = targetOf.get(key);
    if (other !== undefined && other !== r.target.normalize("NFC").trim()) throw new Error(`edit requests ask for two targets for ${q(r.prompt)}: ${q(other)} and ${q(r.target)}`);
    targetOf.set(key, r.target.normalize("NFC").trim());
  });
}
