/**
 * Meta-training examples (MEND §2, Alg. 1; mend-spec §5.1): each is a tuple drawn from an edit record,
 *
 *   (x_e, y_e)    the edit, from one training template of the fact ("edit_inner"),
 *   (x'_e, y_e)   an equivalent input, another training template of the same fact ("edit_outer"),
 *   x_loc         a locality text: one of the record's locality examples ("loc").
 *
 * A group is one edit call of k ≥ 1 examples of distinct facts (the official `n_edits`); a training
 * step holds `accumulate` groups. Which locality text(s) an edit gets is a `LocalityPicker` hook:
 * officially (`otherRecordLocality`) another record's edit input with its true answer, drawn
 * uniformly from the training records; by default here (`recordLocality`) one of the edit record's
 * own locality texts, uniformly (docs/deviations.md).
 */
import { TextExample } from "../model/batch";
import { Rng } from "../model/rng";
import { EditRecord, factKey, LocalityClass, LocalityExample, distinctFacts } from "../datasets/editRecord";

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
 * The locality text(s) of one training edit; `pool` are the record's own locality examples that are
 * not about a fact edited in the same call, `used` the facts edited in the call.
 */
export type LocalityPicker = (record: EditRecord, pool: readonly LocalityExample[], rng: Rng, used: ReadonlySet<string>) => LocalityExample[];

/**
 * One of the edit record's own locality texts, uniformly (our default: a facts-world record carries
 * neighbours of every class, same subject, same relation and unrelated, so the editor is trained on
 * the neighbours its edits are evaluated on).
 */
export const recordLocality: LocalityPicker = (_r, pool, rng) => [rng.choice(pool)];

/**
 * The official sampler (`utils.EditBatchSampler`): another training record's edit input x_e with its
 * true answer, uniformly from `records`, redrawn while it is about a fact edited in the same call.
 * Its class is named relative to the edit (same subject, same relation, or unrelated).
 */
export function otherRecordLocality(records: readonly EditRecord[]): LocalityPicker {
  return (r, _pool, rng, used) => {
    for (let tries = 0; tries < 100; tries++) {
      const o = records[rng.int(records.length)];
      if (factKey(o) === factKey(r) || used.has(factKey(o))) continue;
      const cls: LocalityClass = o.subject === r.subject ? "same_subject" : o.relation === r.relation ? "same_relation" : "unrelated";
      return [{ class: cls, prompt: o.prompts[0], target: o.target_true, subject: o.subject, relation: o.relation }];
    }
    throw new Error(`otherRecordLocality: no record about another fact than the ones edited in the call (${records.length} records)`);
  };
}

/**
 * Draw `n` examples of distinct facts; per record x_e and x'_e are two different training
 * templates (with probability `outerIsEdit`, x'_e = x_e, EasyEdit's choice; official 0).
 */
export function sampleMetaBatch(records: readonly EditRecord[], rng: Rng, n: number, outerIsEdit = 0, pickLocality: LocalityPicker = recordLocality): MetaExample[] {
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
export function sampleMetaGroups(records: readonly EditRecord[], rng: Rng, n: number, kChoices: readonly number[] = [1], outerIsEdit = 0, pickLocality: LocalityPicker = recordLocality): MetaExample[][] {
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
