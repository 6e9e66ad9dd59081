/**
 * What the model needs from a tokenizer, and the two kinds a model folder may hold:
 *
 *  - the facts world's word tokenizer (wordTokenizer.ts): `vocab.json` alone, with <pad>/<bos>/<eos>;
 *  - GPT-2's byte-level BPE (bpeTokenizer.ts): `vocab.json` + `merges.txt`, or `tokenizer.json`,
 *    as downloaded from the Hugging Face Hub. No BOS token is added (as Hugging Face GPT-2, ROME and
 *    EasyEdit), `<|endoftext|>` ends a pretraining text and pads.
 *
 * Prompts and targets are encoded separately and concatenated (ROME / EasyEdit): the target is the
 * text that follows the prompt, so for GPT-2 it starts with a space (" Biden"). `continuation`
 * adds that space when neither side has one; the word tokenizer ignores spaces either way.
 */

export interface Tokenizer {
  readonly kind: "word" | "bpe";
  /** Number of token ids (≤ the model's vocab_size). */
  readonly size: number;
  readonly padId: number;
  /** Prepended to every sequence, or null (GPT-2 adds none). */
  readonly bosId: number | null;
  /** Appended to pretraining texts. */
  readonly eosId: number;
  /** Token ids of `text` (no special tokens added; special tokens inside the text are refused). */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  /** A token as text, for tables (a BPE token keeps its leading space: " Biden"). */
  token(id: number): string;
  /** The tokenizer's files in a model folder (name -> bytes). */
  files(): Record<string, Buffer>;
}

/**
 * The target as the text that follows `prompt`: with a separating space unless the prompt ends with
 * whitespace or the target starts with it ("is" + "Biden" -> " Biden"; " Biden" stays).
 */
export function continuation(prompt: string, target: string): string {
  if (target === "" || /\s$/u.test(prompt) || /^\s/u.test(target)) return target;
  return " " + target;
}
