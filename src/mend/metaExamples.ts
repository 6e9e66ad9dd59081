/**
 * Meta-training examples (MEND §2, Alg. 1; mend-spec §5.1): each is a tuple drawn from an edit record,
 *
 *   (x_e, y_e)    the edit, from one training template of the fact ("edit_inner"),
 *   (x'_e, y_e)   an equivalent input, another training template of the same fact ("edit_outer"),
 *   x_loc         a locality text: one of the record's locality examples ("loc").
 *
 * A group is one edit call of k ≥ 1 examples of distinct facts (the official `n_edits`); a training
 * step holds `accumulate` groups. Which locality text(s) an edit gets is a `LocalityPicker` hook
 * (official: one, uniformly at random).
 */
import { TextExample } from "../world/batch";
import { Rng } from "../world/rng";
import { EditRecord, factKey, LocalityClass, LocalityExample, distinctFacts } from "../world/world";

/** One meta-training example: the edit (x_e, y_e), an equivalent input (x'_e, y_e) and a locality text. */
export interface MetaExample {
  editInner: TextExample;
  editOuter: TextExample;
  loc: TextExample;
  locClass: LocalityClass;
  /** More locality texts for the same edit, sharing its locality weight (a `LocalityPicker` may add them). */
  extraLoc?: TextExample[];
}

/**
 * The locality text(s) of one training edit, from `pool` (the record's locality examples that are
 * not about a fact edited in the same call). Official: one, uniformly at random.
 */
export type LocalityPicker = (record: EditRecord, pool: readonly LocalityExample[], rng: Rng, used: ReadonlySet<string>) => LocalityExample[];

export const officialLocality: LocalityPicker = (_r, pool, rng) => [rng.choice(pool)];

/**
 * Draw `n` examples of distinct facts; per record x_e and x'_e are two different training
 * templates (with probability `outerIsEdit`, x'_e = x_e, EasyEdit's choice; official 0).
 */
export function sampleMetaBatch(records: readonly EditRecord[], rng: Rng, n: number, outerIsEdit = 0, pickLocality: LocalityPicker = officialLocality): MetaExample[] {
  const out: MetaExample[] = [];
  const used = new Set<string>();
  for (let tries = 0; out.length < n && tries < 50 * n; tries++) {
    const r = records[rng.int(records.length)];
    if (used.has(factKey(r))) continue;
    used.add(factKey(r));
    const [i, j0] = rng.sample(r.prompts.map((_, q) => q), 2);
    const j = outerIsEdit > 0 && rng.next() < outerIsEdit ? i : j0; // sometimes L_edit on x_e itself
    const free = r.locality.filter((l) => !used.has(factKey(l))); // not about a fact edited alongside
    const [loc, ...extra] = pickLocality(r, free.length ? free : r.locality, rng, used);
    out.push({
      editInner: { prompt: r.prompts[i], target: r.target_new },
      editOuter: { prompt: r.prompts[j ?? i], target: r.target_new },
      loc: { prompt: loc.prompt, target: loc.target },
      locClass: loc.class,
      ...(extra.length ? { extraLoc: extra.map((l) => ({ prompt: l.prompt, target: l.target })) } : {}),
    });
  }
  return out;
}

/** A training step's `n` groups; each group one (batched) edit call of k distinct facts, k drawn from `kChoices`. */
export function sampleMetaGroups(records: readonly EditRecord[], rng: Rng, n: number, kChoices: readonly number[] = [1], outerIsEdit = 0, pickLocality: LocalityPicker = officialLocality): MetaExample[][] {
  return Array.from({ length: n }, () => sampleMetaBatch(records, rng, kChoices[rng.int(kChoices.length)], outerIsEdit, pickLocality));
}

/** A fixed validation example: first training template as x_e, second as x'_e, the k-th locality example. */
export function fixedMetaExample(r: EditRecord, k: number): MetaExample {
  const loc = r.locality[k % r.locality.length];
  return {
    editInner: { prompt: r.prompts[0], target: r.target_new },
    editOuter: { prompt: r.prompts[1 % r.prompts.length], target: r.target_new },
    loc: { prompt: loc.prompt, target: loc.target },
    locClass: loc.class,
  };
}

/** Fixed validation groups: for each k in `kChoices`, consecutive runs of k records (k = 1: single edits). */
export function fixedValGroups(val: readonly EditRecord[], size: number, kChoices: readonly number[] = [1]): MetaExample[][] {
  const groups: MetaExample[][] = [];
  for (const k of [...new Set(kChoices)].sort((a, b) => a - b)) {
    const recs = (k === 1 ? val : distinctFacts(val)).slice(0, size); // a batched call edits distinct facts
    for (let i = 0; i + k <= recs.length; i += k) groups.push(recs.slice(i, i + k).map((r, j) => fixedMetaExample(r, i + j)));
  }
  return groups;
}
