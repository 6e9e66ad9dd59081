/**
 * Word-level tokenizer for the facts world: one token per word or punctuation mark, case kept.
 * The vocabulary is `vocab.json` ({token: id}, like HF's), with special tokens first.
 * An unknown word is an error that lists every unknown word and suggests close known ones.
 */

import type { Tokenizer } from "./tokenizer";

export const PAD = "<pad>";
export const BOS = "<bos>";
export const EOS = "<eos>";
export const SPECIAL_TOKENS = [PAD, BOS, EOS] as const;

/**
 * Split text into words and punctuation marks ("Who leads France?" -> Who, leads, France, ?).
 * Text is Unicode-normalised (NFC) first; a word is a run of letters, marks and digits in any
 * script ("Français" is one word), an emoji (with its modifiers and joiners) is one token, and
 * special tokens (`<eos>`) are kept whole so that they can be refused by name.
 */
export function splitWords(text: string): string[] {
  return text.normalize("NFC").match(/<[a-z]+>|[\p{L}\p{M}\p{N}]+(?:[-'’][\p{L}\p{M}\p{N}]+)*|\p{Regional_Indicator}{2}|\p{Extended_Pictographic}(?:\p{Emoji_Modifier}|\uFE0F|\u200D\p{Extended_Pictographic})*|[^\s\p{L}\p{M}\p{N}]/gu) ?? [];
}

export class UnknownWordError extends Error {
  constructor(
    readonly unknown: string[],
    readonly suggestions: Record<string, string[]>,
  ) {
    const parts = unknown.slice(0, 5).map((w) => {
      const s = suggestions[w];
      const q = JSON.stringify(w.length > 40 ? `${w.slice(0, 40)}…` : w);
      return s.length ? `${q} (did you mean ${s.map((x) => `"${x}"`).join(", ")}?)` : q;
    });
    const more = unknown.length > 5 ? ` and ${unknown.length - 5} more` : "";
    super(`unknown word${unknown.length > 1 ? "s" : ""} ${parts.join(", ")}${more}: the model only knows the words of its world`);
    this.name = "UnknownWordError";
  }
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

export class WordTokenizer implements Tokenizer {
  readonly kind = "word";
  readonly vocab: readonly string[];
  private readonly index: Map<string, number>;

  constructor(vocab: readonly string[]) {
    SPECIAL_TOKENS.forEach((s, i) => {
      if (vocab[i] !== s) throw new Error(`vocabulary must start with ${SPECIAL_TOKENS.join(", ")}; position ${i} is ${JSON.stringify(vocab[i])}`);
    });
    this.vocab = vocab;
    this.index = new Map(vocab.map((w, i) => [w, i]));
    if (this.index.size !== vocab.length) throw new Error("vocabulary has duplicate tokens");
  }

  /** Build a vocabulary from texts: special tokens, then words in first-seen order. */
  static fromTexts(texts: Iterable<string>): WordTokenizer {
    const seen = new Set<string>(SPECIAL_TOKENS);
    const words: string[] = [...SPECIAL_TOKENS];
    for (const t of texts) for (const w of splitWords(t)) if (!seen.has(w)) (seen.add(w), words.push(w));
    return new WordTokenizer(words);
  }

  /**
   * Parse an HF-style vocab.json object {token: id}; ids must be 0..n-1, each once. Pass the file's
   * `text` too, so that duplicate keys (which JSON.parse silently merges) are found.
   */
  static fromJSON(obj: unknown, text?: string): WordTokenizer {
    if (text !== undefined) {
      const seen = new Set<string>();
      for (const m of text.matchAll(/"((?:[^"\\]|\\.)*)"\s*:/g)) {
        const key = JSON.parse(`"${m[1]}"`) as string;
        if (seen.has(key)) throw new Error(`vocab.json: token ${JSON.stringify(key)} appears twice`);
        seen.add(key);
      }
    }
    if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw new Error("vocab.json must be an object {token: id}");
    const entries = Object.entries(obj as Record<string, unknown>);
    const vocab: string[] = new Array(entries.length);
    for (const [tok, id] of entries) {
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || id >= entries.length || vocab[id] !== undefined) {
        throw new Error(`vocab.json: token ${JSON.stringify(tok)} has a bad or duplicate id ${JSON.stringify(id)}`);
      }
      vocab[id] = tok;
    }
    return new WordTokenizer(vocab);
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.vocab.map((w, i) => [w, i]));
  }

  files(): Record<string, Buffer> {
    return { "vocab.json": Buffer.from(JSON.stringify(this.toJSON()) + "\n") };
  }

  get size(): number {
    return this.vocab.length;
  }
  get padId(): number {
    return 0;
  }
  get bosId(): number {
    return 1;
  }
  get eosId(): number {
    return 2;
  }

  has(word: string): boolean {
    return this.index.has(word);
  }

  /** Close known words for an unknown one: same word in other case, then edit distance <= 2. */
  suggest(word: string, max = 3): string[] {
    const lower = word.toLowerCase();
    const scored: [string, number][] = [];
    for (const w of this.vocab) {
      if (w.startsWith("<")) continue;
      const d = w.toLowerCase() === lower ? 0 : editDistance(lower, w.toLowerCase());
      if (d <= Math.max(1, Math.min(2, Math.floor(word.length / 3)))) scored.push([w, d]);
    }
    return scored.sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0])).slice(0, max).map((s) => s[0]);
  }

  /**
   * Token ids of `text` (no special tokens added). Throws UnknownWordError naming every unknown
   * word as typed, and an error for a special token inside the text.
   */
  encode(text: string): number[] {
    const words = splitWords(text);
    const special = words.filter((w) => (SPECIAL_TOKENS as readonly string[]).includes(w));
    if (special.length) throw new Error(`${special.map((w) => `"${w}"`).join(", ")}: special tokens cannot appear inside a prompt or target (they are added by the library)`);
    const unknown = [...new Set(words.filter((w) => !this.index.has(w)))];
    if (unknown.length) throw new UnknownWordError(unknown, Object.fromEntries(unknown.map((w) => [w, this.suggest(w)])));
    return words.map((w) => this.index.get(w)!);
  }

  decode(ids: readonly number[]): string {
    return ids.map((i) => this.vocab[i] ?? `<id ${i}>`).join(" ");
  }

  token(id: number): string {
    const t = this.vocab[id];
    if (t === undefined) throw new Error(`token id ${id} is outside the vocabulary (size ${this.size})`);
    return t;
  }
}
