import test from "node:test";
import assert from "node:assert/strict";
import { accuracyDrawdown, editSuccess, meanBy, perplexity, perplexityDrawdown, tokenAccuracy, unchanged, unchangedTokenFraction } from "../dist/eval/metrics";

test("edit success is the fraction of inputs with every target token right", () => {
  assert.equal(editSuccess([true, false, true, true]), 0.75);
  assert.ok(Number.isNaN(editSuccess([])));
});

test("token-level accuracy averages per-input token accuracies (EasyEdit)", () => {
  // input 1: 2 of 2 tokens right, input 2: 1 of 3 right
  assert.ok(Math.abs(tokenAccuracy([1, 1 / 3]) - 2 / 3) < 1e-12);
});

test("locality: unchanged argmax tokens, per token and per example", () => {
  assert.equal(unchangedTokenFraction([5, 7, 9], [5, 8, 9]), 2 / 3);
  assert.equal(unchanged([5, 7, 9], [5, 8, 9]), 0);
  assert.equal(unchanged([5, 7], [5, 7]), 1);
  assert.throws(() => unchangedTokenFraction([1], [1, 2]), /differ in length/);
});

test("drawdowns: accuracy before - after, perplexity after - before", () => {
  assert.equal(accuracyDrawdown(0.9, 0.85), 0.9 - 0.85);
  // NLL of 2 tokens summing to 2 ln 4 nats -> perplexity 4
  assert.ok(Math.abs(perplexity(2 * Math.log(4), 2) - 4) < 1e-12);
  assert.equal(perplexityDrawdown(4, 4.5), 0.5);
  assert.throws(() => perplexity(1, 0), /zero tokens/);
});

test("meanBy groups and averages", () => {
  assert.deepEqual(meanBy([{ c: "a", v: 1 }, { c: "b", v: 4 }, { c: "a", v: 3 }], (x) => x.c, (x) => x.v), { a: 2, b: 4 });
});
