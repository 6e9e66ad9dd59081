/**
 * zsRE question answering edits (mend-spec §7.1, §7.5) in the EasyEdit / ROME JSON form
 * (`zsre_mend_{train,eval}.json`): a list of {subject, src, pred, rephrase, alt, answers, loc,
 * loc_ans}. One record becomes one edit record:
 *
 *   x_e = src, x'_e = rephrase, y_e = alt (the official edit target), target_true = answers[0],
 *   locality = the Natural Questions pair (loc, loc_ans), as MEND's zsRE validation uses.
 *
 * Their metrics (the official edit success and drawdown, EasyEdit's and ROME's token accuracies and
 * locality) are in src/eval/zsreMetrics.ts.
 */
import { EditRecord } from "./editRecord";
import { field, readJsonList, Skipped } from "./jsonRecords";

/**
 * zsRE's records as edit records. A record with an empty `alt` has no edit and is skipped (the
 * official loader drops records without alternatives); `skipped` lists them.
 */
export function zsreRecords(data: unknown, file: string, split: EditRecord["split"] = "test"): { records: EditRecord[]; skipped: Skipped[] } {
  const skipped: Skipped[] = [];
  const records = readJsonList(data, file).flatMap((r, i) => {
    if (r.alt === "") {
      skipped.push({ index: i, reason: 'empty "alt" (no edit target)' });
      return [];
    }
    const at = `${file}: record ${i}`;
    const src = field(r, "src", "string", at);
    const rephrase = field(r, "rephrase", "string", at);
    const alt = field(r, "alt", "string", at);
    const answers = field(r, "answers", "string[]", at);
    const loc = field(r, "loc", "string", at);
    const locAns = field(r, "loc_ans", "string", at);
    const subject = typeof r.subject === "string" ? r.subject : src;
    return {
      case_id: i,
      split,
      subject,
      relation: src, // a zsRE question is its own relation: two records conflict only when they ask the same
      target_true: answers[0] ?? "",
      target_new: alt,
      prompts: [src, rephrase],
      heldout_prompts: [rephrase],
      locality: [{ class: "unrelated" as const, prompt: loc, target: locAns, subject: "nq", relation: loc }],
    };
  });
  return { records, skipped };
}
