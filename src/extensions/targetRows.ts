/**
 * Target rows (our deviation, opt-in: the `rows: "target"` extension, not shipped). The official
 * editor sees every token row with a gradient, including the subject's and the relation's own
 * tokens, which every other prompt about that subject or relation shares. This row selector keeps,
 * in every edited layer, only the labelled positions (those whose logits predict a target token):
 * the edit is then keyed on the representation that predicts the answer. Measured: the same
 * paraphrase-vs-locality trade-off, 15-25% faster training (docs/research-log.md).
 */
import { RowSelector } from "../mend/hooks";

export const targetRows: RowSelector = (official, target) => Object.fromEntries(Object.keys(official).map((n) => [n, [...target]]));
