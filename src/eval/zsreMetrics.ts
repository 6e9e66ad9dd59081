/**
 * zsRE's metrics, each from the code that defines it (mend-spec §6.2-6.4), for one edit of a record
 * (x_e = src, x'_e = rephrase, y_e = alt; the locality pair (loc, loc_ans) is an NQ question):
 *
 *   edit_success       the official MEND `edit/acc` on x'_e: every token of y_e is the teacher-forced
 *                      argmax on the rephrase (sequence exact match; trainer.py, losses.py);
 *   rewrite_success    the same on src;
 *   rewrite_acc,       EasyEdit's reliability and generalisation, and ROME's zsRE efficacy and
 *   rephrase_acc       paraphrase: the fraction of y_e's tokens that are the argmax (token level);
 *   locality           EasyEdit's locality: the fraction of loc_ans tokens whose argmax the edit did
 *                      not change (agreement before/after, not accuracy);
 *   neighborhood_acc   ROME's zsRE specificity: the post-edit fraction of loc_ans tokens that are the
 *                      argmax (accuracy against the true answer, not a change);
 *   acc_dd             the official accuracy drawdown: exact match of loc_ans before minus after.
 *
 * ROME's and EasyEdit's locality therefore differ: a loc_ans the base model already gets wrong
 * counts as unchanged for EasyEdit and as wrong for ROME.
 */
import type { LanguageModel } from "../model/languageModel";
import { scoreTargets } from "../model/score";
import type { EditRecord } from "../datasets/editRecord";
import { accuracyDrawdown, unchangedTokenFraction } from "./metrics";

export interface ZsreScores {
  edit_success: number;
  rewrite_success: number;
  rewrite_acc: number;
  rephrase_acc: number;
  locality: number;
  neighborhood_acc: number;
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
    neighborhood_acc: after[2].tokenAcc,
    acc_dd: accuracyDrawdown(+before.exact, +after[2].exact),
  };
}
