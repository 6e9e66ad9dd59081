/**
 * Locality sampling for meta-training (our deviations; the official code draws one x_loc per edit):
 *
 *  - `locPerEdit` n: n distinct locality texts per training edit, sharing the edit's c_loc weight, so
 *    the loss scale is unchanged and only its variance drops (shipped recipe: 3);
 *  - `sameAnswerLoc` p: with probability p the last of them is another subject's fact with the
 *    edited fact's relation and old answer ("The official language of Guatemala is Spanish" for an
 *    edit of Panama's Spanish), the probes a single edit breaks most (not shipped: halves those
 *    breaks but costs edit success; docs/research-log.md).
 *
 * Both plug into meta-training as a `LocalityPicker` (src/mend/metaExamples.ts).
 */
import { LocalityPicker } from "../mend/metaExamples";
import { distinctFacts, EditRecord, factKey, LocalityExample } from "../datasets/editRecord";

/** Locality texts that share a fact's relation and answer, keyed `relation|answer`, one per (subject, training template). */
export type SameAnswerPool = Map<string, LocalityExample[]>;

export function sameAnswerPool(records: readonly EditRecord[]): SameAnswerPool {
  const pool: SameAnswerPool = new Map();
  for (const r of distinctFacts(records)) {
    const key = `${r.relation}|${r.target_true}`;
    if (!pool.has(key)) pool.set(key, []);
    for (const prompt of r.prompts) pool.get(key)!.push({ class: "same_relation", prompt, target: r.target_true, subject: r.subject, relation: r.relation });
  }
  return pool;
}

export interface LocalitySampling {
  /** Locality texts per training edit (official 1). */
  locPerEdit: number;
  /** Probability that an edit's last locality text shares its relation and old answer (official 0). */
  sameAnswerLoc: number;
}

function validateLocalitySampling(s: LocalitySampling): void {
  if (!Number.isInteger(s.locPerEdit) || s.locPerEdit < 1) throw new Error(`locPerEdit must be a positive integer, got ${s.locPerEdit}`);
  if (!(s.sameAnswerLoc >= 0 && s.sameAnswerLoc <= 1)) throw new Error(`sameAnswerLoc must be a probability in [0, 1], got ${s.sameAnswerLoc}`);
}

/** The `LocalityPicker` of these settings for training records `train`. */
export function localityPicker(s: LocalitySampling, train: readonly EditRecord[]): LocalityPicker {
  validateLocalitySampling(s);
  const pool = s.sameAnswerLoc > 0 ? sameAnswerPool(train) : null;
  return (r, free, rng, used) => {
    const locs = s.locPerEdit > 1 ? rng.sample(free, s.locPerEdit) : [rng.choice(free)];
    if (pool && rng.next() < s.sameAnswerLoc) {
      const same = (pool.get(`${r.relation}|${r.target_true}`) ?? []).filter((l) => l.subject !== r.subject && !used.has(factKey(l)));
      if (same.length) locs[locs.length - 1] = rng.choice(same);
    }
    return locs;
  };
}
