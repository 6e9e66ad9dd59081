/**
 * CounterFact counterfactual edits (mend-spec §7.4; ROME's `counterfact.json`, and EasyEdit's
 * `counterfact-{train,val}.json`). One record becomes one edit record:
 *
 *   ROME:     x_e = requested_rewrite.prompt with the subject, x'_e = a paraphrase prompt,
 *             y_e = target_new.str, target_true = target_true.str, locality = the neighbourhood
 *             prompts with the true answer (other subjects that share it);
 *   EasyEdit: x_e = prompt, x'_e = rephrase_prompt, y_e = target_new, target_true = ground_truth,
 *             locality = (locality_prompt, locality_ground_truth).
 *
 * Metrics: ROME's (R-paper §3.2; `experiments/summarize.py`). Each prompt is scored by the mean
 * per-token NLL of " target_new" and " target_true" (teacher forced), P = exp(−NLL):
 *   efficacy ES = [P(new) > P(true)] on the rewrite prompt, EM = P(new) − P(true);
 *   paraphrase PS / PM the same, averaged over a case's paraphrases;
 *   neighbourhood NS = [P(true) > P(new)], NM = P(true) − P(new), averaged over its neighbours;
 *   score S = harmonic mean of ES, PS and NS (the paper's Table 4 and ROME's `summarize.py`, which
 *   takes the harmonic mean of the three case-averaged success rates).
 * Each is averaged per case, then over cases.
 */
import type { LanguageModel } from "../model/languageModel";
import { scoreTargets } from "../model/score";
import { mean } from "../eval/metrics";
import { EditRecord } from "./editRecord";
import { field, readJsonList, Skipped } from "./jsonRecords";

/** CounterFact's records (ROME's or EasyEdit's form, told apart by `requested_rewrite`) as edit records. */
export function counterfactRecords(data: unknown, file: string, split: EditRecord["split"] = "test"): { records: EditRecord[]; skipped: Skipped[] } {
  const records = readJsonList(data, file).map((r, i): EditRecord => {
    const id = typeof r.case_id === "number" ? r.case_id : i;
    const at = `${file}: record ${i} (case_id ${id})`;
    if (r.requested_rewrite !== undefined) {
      const rw = field(r, "requested_rewrite", "object", at);
      const where = `${at}: requested_rewrite`;
      const template = field(rw, "prompt", "string", where);
      const subject = field(rw, "subject", "string", where);
      if (!template.includes("{}")) throw new Error(`${where}.prompt has no "{}" for the subject: ${JSON.stringify(template)}`);
      const str = (k: "target_new" | "target_true") => field(field(rw, k, "object", where), "str", "string", `${where}.${k}`);
      const paraphrases = field(r, "paraphrase_prompts", "string[]", at);
      const neighbours = field(r, "neighborhood_prompts", "string[]", at);
      if (paraphrases.length === 0 || neighbours.length === 0) throw new Error(`${at}: paraphrase_prompts and neighborhood_prompts must not be empty`);
      const target_true = str("target_true");
      const relation = typeof rw.relation_id === "string" ? rw.relation_id : template;
      return {
        case_id: id,
        split,
        subject,
        relation,
        target_true,
        target_new: str("target_new"),
        prompts: [template.replace("{}", subject), ...paraphrases],
        heldout_prompts: paraphrases,
        locality: neighbours.map((p) => ({ class: "same_relation" as const, prompt: p, target: target_true, subject: "", relation })),
      };
    }
    const prompt = field(r, "prompt", "string", at);
    const rephrase = field(r, "rephrase_prompt", "string", at);
    const target_true = field(r, "ground_truth", "string", at);
    return {
      case_id: id,
      split,
      subject: typeof r.subject === "string" ? r.subject : prompt,
      relation: prompt,
      target_true,
      target_new: field(r, "target_new", "string", at),
      prompts: [prompt, rephrase],
      heldout_prompts: [rephrase],
      locality: [{ class: "same_relation" as const, prompt: field(r, "locality_prompt", "string", at), target: field(r, "locality_ground_truth", "string", at), subject: "", relation: prompt }],
    };
  });
  return { records, skipped: [] };
}

export interface CounterfactScores {
  efficacy_success: number;
  efficacy_magnitude: number;
  paraphrase_success: number;
  paraphrase_magnitude: number;
  neighborhood_success: number;
  neighborhood_magnitude: number;
}

/** P(new) and P(true) (exp of the mean per-token log-probability) after each prompt. */
function probs(m: LanguageModel, prompts: readonly string[], r: EditRecord): { pNew: number; pTrue: number }[] {
  const s = scoreTargets(m, prompts.flatMap((p) => [{ prompt: p, target: r.target_new }, { prompt: p, target: r.target_true }]));
  const p = (i: number) => Math.exp(s[i].logProb / s[i].argmax.length);
  return prompts.map((_, i) => ({ pNew: p(2 * i), pTrue: p(2 * i + 1) }));
}

/**
 * ROME's CounterFact scores of one record under a model (the edited model for "post", the base
 * model for "pre"). The rewrite prompt is `prompts[0]`.
 */
export function counterfactScores(m: LanguageModel, r: EditRecord): CounterfactScores {
  const [rewrite] = probs(m, [r.prompts[0]], r);
  const para = probs(m, r.heldout_prompts, r);
  const nb = probs(m, r.locality.map((l) => l.prompt), r);
  return {
    efficacy_success: +(rewrite.pNew > rewrite.pTrue),
    efficacy_magnitude: rewrite.pNew - rewrite.pTrue,
    paraphrase_success: mean(para.map((x) => +(x.pNew > x.pTrue))),
    paraphrase_magnitude: mean(para.map((x) => x.pNew - x.pTrue)),
    neighborhood_success: mean(nb.map((x) => +(x.pTrue > x.pNew))),
    neighborhood_magnitude: mean(nb.map((x) => x.pTrue - x.pNew)),
  };
}

/** The harmonic mean of ES, PS and NS (the paper's score S); 0 when any is 0. */
export function counterfactScore(s: Pick<CounterfactScores, "efficacy_success" | "paraphrase_success" | "neighborhood_success">): number {
  const xs = [s.efficacy_success, s.paraphrase_success, s.neighborhood_success];
  return xs.some((x) => x === 0) ? 0 : xs.length / xs.reduce((a, x) => a + 1 / x, 0);
}
