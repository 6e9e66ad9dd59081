/** GPT-2 byte-level BPE: exact ids against an independent GPT-2 encoder, round trips, file checks. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { BpeTokenizer, gpt2TokenizerFiles } from "../dist/model/bpeTokenizer";
import { continuation } from "../dist/model/tokenizer";
import { loadTokenizer } from "../dist/model/modelFolder";
import { encodeExamples } from "../dist/model/batch";
import { Rng } from "../dist/model/rng";

// gpt-tokenizer's r50k_base: a port of OpenAI's tiktoken tables for GPT-2, written independently of tokenizers.js.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const r50k: { encode(text: string, opts?: { disallowedSpecial?: Set<string> }): number[] } = require("gpt-tokenizer/cjs/encoding/r50k_base");

const files = gpt2TokenizerFiles();
const tok = BpeTokenizer.fromFiles(files["vocab.json"], files["merges.txt"]);

const PIECES = [
  ..."the of and to in is was for on as with by he at from his an were are which this be has or had first one their its new after who they have her she two been other when there all during into school time may years more most only over city some world would where later up such used many can state about national out known university united then made".split(" "),
  "President", "BIDEN", "McDonald", "iPhone", "COVID-19", "e-mail", "U.S.", "Ph.D.", "naïve", "café", "Straße", "Ελλάδα", "Москва", "日本語", "中文", "한국어", "العربية", "हिन्दी", "ไทย",
  "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "’s", "n't", "''", "'",
  "0", "7", "42", "1999", "2024", "3.14159", "1,000,000", "00001", "٣", "१२",
  ".", ",", "!", "?", ";", ":", "(", ")", "[", "]", "{", "}", "\"", "-", "--", "—", "…", "$", "%", "&", "*", "@", "#", "/", "\\", "<", ">", "=", "+", "~", "^", "|", "`", "_",
  "👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🤖", "☃", "€", "©", "™", "°", "±", "µ",
  "e\u0301", "a\u0308", "\u200d", "\ufeff", "\u00a0", "\u3000",
];
const SPACES = ["", " ", " ", " ", "  ", "   ", "\n", "\n\n", "\t", " \n", "\n ", "\r\n", "      "];

/** A seeded random string of pieces and whitespace runs (or a random code point now and then). */
function randomText(rng: Rng): string {
  let s = "";
  const n = 1 + rng.int(12);
  for (let i = 0; i < n; i++) {
    s += SPACES[rng.int(SPACES.length)];
    if (rng.next() < 0.05) {
      const ranges = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x52f], [0x4e00, 0x4fff], [0x1f300, 0x1f64f], [0x10000, 0x1ffff]];
      const [lo, hi] = ranges[rng.int(ranges.length)];
      s += String.fromCodePoint(lo + rng.int(hi - lo + 1));
    } else s += PIECES[rng.int(PIECES.length)];
  }
  return s + (rng.next() < 0.2 ? SPACES[rng.int(SPACES.length)] : "");
}

test("GPT-2 BPE: the same ids as an independent GPT-2 encoder on 4000 strings, and exact round trips", () => {
  const rng = new Rng(2024);
  let mismatches = 0;
  const first: string[] = [];
  for (let i = 0; i < 4000; i++) {
    const text = randomText(rng);
    const ours = tok.encode(text);
    const ref = r50k.encode(text, { disallowedSpecial: new Set() });
    if (JSON.stringify(ours) !== JSON.stringify(ref)) {
      mismatches++;
      if (first.length < 3) first.push(`${JSON.stringify(text)}: ${ours} vs ${ref}`);
    }
    assert.equal(tok.decode(ours), text, `round trip of ${JSON.stringify(text)}`);
  }
  assert.equal(mismatches, 0, first.join("\n"));
});

test("GPT-2 BPE: known ids, a leading space is part of the token, <|endoftext|> is EOS and padding", () => {
  assert.deepEqual(tok.encode("Hello world"), [15496, 995]);
  assert.deepEqual(tok.encode(" Biden"), [21010]);
  assert.equal(tok.token(21010), " Biden");
  assert.equal(tok.size, 50257);
  assert.equal(tok.eosId, 50256);
  assert.equal(tok.padId, 50256);
  assert.equal(tok.bosId, null);
  assert.throws(() => tok.encode("a <|endoftext|> b"), /"<\|endoftext\|>": special tokens cannot appear inside a prompt or target/);
  assert.throws(() => tok.decode([50257]), /token id 50257 is outside the vocabulary \(size 50257\)/);
});

test("GPT-2 BPE: tokenizer.json and vocab.json + merges.txt encode alike; a folder prefers tokenizer.json", () => {
  const json = BpeTokenizer.fromTokenizerJson(JSON.stringify(BpeTokenizer.tokenizerJson(files["vocab.json"], files["merges.txt"])));
  const rng = new Rng(7);
  for (let i = 0; i < 300; i++) {
    const t = randomText(rng);
    assert.deepEqual(json.encode(t), tok.encode(t));
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bpe-"));
  fs.writeFileSync(path.join(dir, "vocab.json"), files["vocab.json"]);
  fs.writeFileSync(path.join(dir, "merges.txt"), files["merges.txt"]);
  const fromFolder = loadTokenizer(dir);
  assert.equal(fromFolder.kind, "bpe");
  assert.deepEqual(Object.keys(fromFolder.files()).sort(), ["merges.txt", "vocab.json"]);
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(BpeTokenizer.tokenizerJson(files["vocab.json"], files["merges.txt"])));
  assert.deepEqual(Object.keys(loadTokenizer(dir).files()), ["tokenizer.json"]);
});

test("GPT-2 BPE: bad tokenizer files are errors that name the file and the problem", () => {
  assert.throws(() => BpeTokenizer.fromFiles("{", files["merges.txt"], "/m"), /\/m\/vocab\.json: not valid JSON/);
  assert.throws(() => BpeTokenizer.fromFiles(files["vocab.json"], "#version: 0.2\nĠ t\nnot-a-merge\n", "/m"), /\/m\/merges\.txt: line 3 is not a merge "left right"/);
  assert.throws(() => BpeTokenizer.fromFiles(JSON.stringify({ a: 0, b: 1, ab: 2 }), "a b\n", "/m"), /no <\|endoftext\|> token/);
  assert.throws(() => BpeTokenizer.fromFiles(JSON.stringify({ a: 0, b: 0 }), "a b\n", "/m"), /token "b" has a bad or duplicate id 0/);
  assert.throws(() => BpeTokenizer.fromFiles(JSON.stringify({ a: 0, b: 1 }), "a b\n", "/m"), /line 1 merges into "ab", which vocab\.json lacks/);
  assert.throws(() => BpeTokenizer.fromTokenizerJson(JSON.stringify({ model: { type: "WordPiece", vocab: {} } }), "t.json"), /t\.json: model\.type is "WordPiece"; only GPT-2's byte-level BPE/);
  const metaspace = { ...BpeTokenizer.tokenizerJson(files["vocab.json"], files["merges.txt"]), pre_tokenizer: { type: "Metaspace" } };
  assert.throws(() => BpeTokenizer.fromTokenizerJson(JSON.stringify(metaspace), "t.json"), /pre_tokenizer is "Metaspace"/);
});

test("targets are the prompt's continuation: a space is added unless one side has it; no BOS for GPT-2", () => {
  assert.equal(continuation("The president is", "Biden"), " Biden");
  assert.equal(continuation("The president is", " Biden"), " Biden");
  assert.equal(continuation("The president is ", "Biden"), "Biden");
  const a = encodeExamples(tok, [{ prompt: "The president of the United States is", target: "Joe Biden" }], "target", 64);
  const p = tok.encode("The president of the United States is");
  const t = tok.encode(" Joe Biden");
  assert.deepEqual(a.inputIds[0], [...p, ...t].slice(0, -1), "no BOS; the input stops before the last target token");
  assert.deepEqual(a.targetPositions[0], [p.length - 1, p.length], "both target tokens are labelled");
  assert.deepEqual(a.targetPositions[0].map((i) => a.labels[0][i]), t);
});
