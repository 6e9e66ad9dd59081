/**
 * ROME's CounterFact metrics (Meng et al., NeurIPS 2022, §3.2; code: `experiments/py/
 * eval_utils_counterfact.py` and `experiments/summarize.py`). Each prompt is scored by the mean
 * per-token NLL of " target_new" and of " target_true" after it (teacher forced), P = exp(−NLL):
 *
 *   efficacy       ES = [P(new) > P(true)] on the rewrite prompt,   EM = P(new) − P(true);
 *   paraphrase     PS, PM: the same, averaged over the case's paraphrase prompts;
 *   neighbourhood  NS = [P(true) > P(new)],   NM = P(true) − P(new), averaged over its neighbours;
 *   score          S = the harmonic mean of the case-averaged ES, PS and NS (summarize.py, Table 4).
 *
 * Each is averaged per case, then over cases (evaluateDataset). The same definitions serve the facts
 * world's magnitudes (evaluate.ts).
 */
import type { LanguageModel } from "../model/languageModel";
import { scoreTargets } from "../model/score";
import type { EditRecord } from "../datasets/editRecord";
import { mean } from "./metrics";

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
 * model for "pre"). The rewrite prompt is `prompts[0]`, the paraphrases `heldout_prompts`, the
 * neighbours the locality prompts.
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
