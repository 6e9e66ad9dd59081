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
 * Their metrics (ROME's ES/EM, PS/PM, NS/NM and S) are in src/eval/counterfactMetrics.ts.
 */
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
      const holes = template.split("{}").length - 1;
      if (holes !== 1) throw new Error(`${where}.prompt must hold "{}" exactly once for the subject (as ROME's str.format), found ${holes}: ${JSON.stringify(template)}`);
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
        prompts: [template.split("{}").join(subject), ...paraphrases], // filled literally: "$&" in a subject stays "$&"
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
