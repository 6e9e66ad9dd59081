/**
 * Editing metrics, each a small pure function over plain numbers (mend-spec §6).
 *
 * Paper (MEND §5, official code):
 *  - edit success (ES): fraction of inputs on which *every* target token is the teacher-forced
 *    argmax of the edited model (sequence exact match), over the edit input and its equivalents;
 *  - accuracy drawdown: accuracy before − after on locality examples (exact match of their answers);
 *  - perplexity drawdown: perplexity after − before on held-out text.
 * EasyEdit (token level):
 *  - reliability / generalisation: mean fraction of target tokens that are the argmax;
 *  - locality: mean fraction of locality answer tokens whose argmax is unchanged by the edit.
 * Ours, for locality drift:
 *  - unchanged: fraction of locality examples whose argmax answer tokens are all unchanged;
 *  - mean KL(pre ‖ post) and the change in the probability of the original answer.
 */

export function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

/** ES: mean of per-input exact matches (every target token right). */
export function editSuccess(exact: readonly boolean[]): number {
  return mean(exact.map((e) => (e ? 1 : 0)));
}

/** EasyEdit reliability/generalisation: mean per-input token accuracy. */
export function tokenAccuracy(perInputTokenAcc: readonly number[]): number {
  return mean(perInputTokenAcc);
}

/** Fraction of positions where two argmax sequences agree (EasyEdit locality of one example). */
export function unchangedTokenFraction(pre: readonly number[], post: readonly number[]): number {
  if (pre.length !== post.length) throw new Error(`argmax sequences differ in length (${pre.length} vs ${post.length})`);
  if (pre.length === 0) return NaN;
  return pre.filter((t, i) => t === post[i]).length / pre.length;
}

/** 1 when every argmax token of a locality answer is unchanged, else 0. */
export function unchanged(pre: readonly number[], post: readonly number[]): number {
  return unchangedTokenFraction(pre, post) === 1 ? 1 : 0;
}

/** Accuracy drawdown: acc before − acc after (positive = damage). */
export function accuracyDrawdown(accBefore: number, accAfter: number): number {
  return accBefore - accAfter;
}

/** Perplexity from a summed NLL (nats) over `tokens` tokens. */
export function perplexity(nllSum: number, tokens: number): number {
  if (tokens <= 0) throw new Error("perplexity of zero tokens");
  return Math.exp(nllSum / tokens);
}

/** Perplexity drawdown: ppl after − ppl before (positive = damage). */
export function perplexityDrawdown(pplBefore: number, pplAfter: number): number {
  return pplAfter - pplBefore;
}

/** Group values by a key and average each group. */
export function meanBy<T>(items: readonly T[], key: (t: T) => string, value: (t: T) => number): Record<string, number> {
  const groups: Record<string, number[]> = {};
  for (const it of items) (groups[key(it)] ??= []).push(value(it));
  return Object.fromEntries(Object.entries(groups).map(([k, v]) => [k, mean(v)]));
}
