import test from "node:test";
import assert from "node:assert/strict";
import { splitWords, UnknownWordError, WordTokenizer } from "../dist/model/wordTokenizer";
import { getWorld } from "./helpers";

test("words and punctuation are separate tokens", () => {
  assert.deepEqual(splitWords("Who leads France? Answer: Diaz-Canel's"), ["Who", "leads", "France", "?", "Answer", ":", "Diaz-Canel's"]);
});

test("encode/decode round trip and special tokens first", () => {
  const tok = WordTokenizer.fromTexts(getWorld().texts());
  assert.deepEqual(tok.vocab.slice(0, 3), ["<pad>", "<bos>", "<eos>"]);
  const ids = tok.encode("The president of the United States is Trump");
  assert.equal(tok.decode(ids), "The president of the United States is Trump");
  assert.ok(tok.has("Biden"), "Biden is a known word");
  const back = WordTokenizer.fromJSON(tok.toJSON());
  assert.deepEqual(back.vocab, tok.vocab);
});

test("unknown words are an error listing all of them with suggestions", () => {
  const tok = WordTokenizer.fromTexts(getWorld().texts());
  let err: unknown;
  try {
    tok.encode("The presidnet of the Unted States is Obamma");
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof UnknownWordError);
  assert.deepEqual(err.unknown, ["presidnet", "Unted", "Obamma"]);
  assert.match(err.message, /"presidnet" \(did you mean "president"/);
  assert.match(err.message, /"Unted" \(did you mean "United"/);
  assert.match(err.message, /"Obamma" \(did you mean "Obama"/);
  assert.throws(() => WordTokenizer.fromJSON({ a: 0, b: 0 }), /bad or duplicate id/);
});
