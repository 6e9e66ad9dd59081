/**
 * zsRE question answering edits (mend-spec §7.1, §7.5) in the EasyEdit / ROME JSON form
 * (`zsre_mend_{train,eval}.json`): a list of {subject, src, pred, rephrase, alt, answers, loc,
 * loc_ans}. One record becomes one edit record:
 *
 *   x_e = src, x'_e = rephrase, y_e = alt (the official edit target), target_true = answers[0],
 *   locality = the Natural Questions pair (loc, loc_ans), as MEND's zsRE validation uses.
 *
 * Metrics (mend-spec §6.2, §6.3): edit success = every target token the teacher-forced argmax on the
 * rephrase (the official `edit/acc`) and on src; EasyEdit's token accuracies on both; locality =
 * the fraction of loc_ans tokens whose argmax is unchanged (EasyEdit) and the official accuracy
 * drawdown (exact match of loc_ans before minus after).
 */
import type { LanguageModel } from "../model/languageModel";
import { scoreTargets } from "../model/score";
import { accuracyDrawdown, unchangedTokenFraction } from "../eval/metrics";
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

export interface ZsreScores {
  /** The official edit success: every token of y_e is the argmax on the rephrase. */
  edit_success: number;
  /** The same on the edit prompt itself. */
  rewrite_success: number;
  /** EasyEdit's reliability and generalisation: token-level accuracy on src and on the rephrase. */
  rewrite_acc: number;
  rephrase_acc: number;
  /** EasyEdit's locality: fraction of loc_ans tokens whose argmax did not change. */
  locality: number;
  /** Official acc DD: exact match of loc_ans before minus after. */
  acc_dd: number;
}

/** zsRE scores of one edit: `post` is the model after editing `r`, `pre` the model before. */
export function zsreScores(pre: LanguageModel, post: LanguageModel, r: EditRecord): ZsreScores {
  const [src, rephrase] = r.prompts;
  const loc = r.locality[0];
  const after = scoreTargets(post, [
    { prompt: src, target: r.target_new },
    { prompt: rephrase, target: r.target_new },
    { prompt: loc.prompt, target: loc.target },
  ]);
  const [before] = scoreTargets(pre, [{ prompt: loc.prompt, target: loc.target }]);
  return {
    edit_success: +after[1].exact,
    rewrite_success: +after[0].exact,
    rewrite_acc: after[0].tokenAcc,
    rephrase_acc: after[1].tokenAcc,
    locality: unchangedTokenFraction(before.argmax, after[2].argmax),
    acc_dd: accuracyDrawdown(+before.exact, +after[2].exact),
  };
}
