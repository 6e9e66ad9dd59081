/**
 * Golden metric tests: CounterFact's and zsRE's metrics on models whose next-token probabilities are
 * written down by hand, against values worked out by hand from the definitions (ROME's
 * `eval_utils_counterfact.py` / `summarize.py`; MEND's `edit/acc` and accuracy drawdown; EasyEdit's
 * token accuracies and locality; ROME's zsRE token accuracies).
 */
import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { counterfactScore, counterfactScores } from "../dist/eval/counterfactMetrics";
import { zsreScores } from "../dist/eval/zsreMetrics";
import type { Batch } from "../dist/model/batch";
import { DEFAULT_GPT2_CONFIG, GPT2Config } from "../dist/model/config";
import type { LanguageModel } from "../dist/model/languageModel";
import { WordTokenizer } from "../dist/model/wordTokenizer";
import type { EditRecord } from "../dist/datasets/editRecord";
import { setup } from "./helpers";

const WORDS = "a b c d e f g h i j k l m n o p q r s t u v w x y z".split(" ");
const tok = WordTokenizer.fromTexts([WORDS.join(" ")]);
const config: GPT2Config = { ...DEFAULT_GPT2_CONFIG, vocab_size: tok.size };

/**
 * A language model given by hand: after each listed prefix (words), the probabilities of some next
 * words; the rest of the mass is spread evenly over every other token. Unlisted prefixes: uniform.
 */
function tableModel(table: Record<string, Record<string, number>>): LanguageModel {
  const V = tok.size;
  const byIds = new Map(Object.entries(table).map(([prefix, dist]) => [[tok.bosId, ...tok.encode(prefix)].join(","), dist]));
  const row = (prefix: number[]): number[] => {
    const dist = byIds.get(prefix.join(",")) ?? {};
    const listed = Object.entries(dist).map(([w, p]) => [tok.encode(w)[0], p] as const);
    const rest = (1 - listed.reduce((s, [, p]) => s + p, 0)) / (V - listed.length);
    const probs = new Array<number>(V).fill(rest);
    for (const [id, p] of listed) probs[id] = p;
    return probs.map(Math.log);
  };
  return {
    config,
    tokenizer: tok,
    logits(batch: Batch) {
      const ids = batch.inputIds.arraySync() as number[][];
      return tf.tensor3d(ids.map((r) => r.map((_, t) => row(r.slice(0, t + 1)))));
    },
  };
}

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-6, `${what}: ${a} vs ${b}`);

test("CounterFact (ROME): ES/EM, PS/PM, NS/NM and S from hand-set probabilities", async () => {
  await setup();
  // new target "x y" (two tokens), true target "z"; P = exp(mean per-token log p)
  const record: EditRecord = {
    case_id: 0, split: "test", subject: "s", relation: "r", target_true: "z", target_new: "x y",
    prompts: ["a b c", "d e", "f g"], heldout_prompts: ["d e", "f g"],
    locality: [{ class: "same_relation", prompt: "h i", target: "z", subject: "", relation: "r" }, { class: "same_relation", prompt: "j k", target: "z", subject: "", relation: "r" }],
  };
  const m = tableModel({
    "a b c": { x: 0.5, z: 0.2 }, "a b c x": { y: 0.8 }, // P(new) = √(0.5·0.8) = 0.632456, P(true) = 0.2
    "d e": { x: 0.1, z: 0.6 }, "d e x": { y: 0.9 }, //      P(new) = √0.09 = 0.3, P(true) = 0.6
    "f g": { x: 0.7, z: 0.1 }, "f g x": { y: 0.7 }, //      P(new) = 0.7, P(true) = 0.1
    "h i": { z: 0.4, x: 0.3 }, "h i x": { y: 0.5 }, //      P(new) = √0.15 = 0.387298, P(true) = 0.4
    "j k": { z: 0.1, x: 0.6 }, "j k x": { y: 0.6 }, //      P(new) = 0.6, P(true) = 0.1
  });
  const s = counterfactScores(m, record);
  assert.equal(s.efficacy_success, 1); //                   0.632 > 0.2
  close(s.efficacy_magnitude, Math.sqrt(0.4) - 0.2, "EM"); // 0.432456
  assert.equal(s.paraphrase_success, 0.5); //              0.3 < 0.6, 0.7 > 0.1
  close(s.paraphrase_magnitude, (0.3 - 0.6 + (0.7 - 0.1)) / 2, "PM"); // 0.15
  assert.equal(s.neighborhood_success, 0.5); //            0.4 > 0.387, 0.1 < 0.6
  close(s.neighborhood_magnitude, (0.4 - Math.sqrt(0.15) + (0.1 - 0.6)) / 2, "NM"); // -0.243649
  close(counterfactScore(s), 3 / (1 / 1 + 1 / 0.5 + 1 / 0.5), "S"); // 0.6
});

test("zsRE: the official edit success and drawdown, EasyEdit's token accuracies and locality, ROME's neighbourhood accuracy", async () => {
  await setup();
  const record: EditRecord = {
    case_id: 0, split: "test", subject: "s", relation: "a b", target_true: "t", target_new: "x y",
    prompts: ["a b", "c d"], heldout_prompts: ["c d"],
    locality: [{ class: "unrelated", prompt: "n q", target: "u v", subject: "nq", relation: "n q" }],
  };
  // After the edit: src gets x right and y wrong (w wins), the rephrase gets both; loc_ans "u v" loses v.
  const post = tableModel({ "a b": { x: 0.6 }, "a b x": { y: 0.3, w: 0.5 }, "c d": { x: 0.7 }, "c d x": { y: 0.6 }, "n q": { u: 0.4 }, "n q u": { w: 0.5, v: 0.3 } });
  const preRight = tableModel({ "n q": { u: 0.6 }, "n q u": { v: 0.7 } });
  const a = zsreScores(preRight, post, record);
  assert.equal(a.edit_success, 1, "every token of y_e on the rephrase");
  assert.equal(a.rewrite_success, 0, "y is not the argmax after src x");
  assert.equal(a.rewrite_acc, 0.5);
  assert.equal(a.rephrase_acc, 1);
  assert.equal(a.locality, 0.5, "EasyEdit: argmax u kept, v -> w changed");
  assert.equal(a.neighborhood_acc, 0.5, "ROME: u right, v wrong after the edit");
  assert.equal(a.acc_dd, 1, "exact before, not after");
  // A base model that already gets loc_ans wrong: EasyEdit's locality (agreement) and ROME's accuracy part ways.
  const preWrong = tableModel({ "n q": { w: 0.6, u: 0.2 }, "n q u": { v: 0.6 } });
  const postSame = tableModel({ "a b": { x: 0.6 }, "a b x": { y: 0.6 }, "c d": { x: 0.7 }, "c d x": { y: 0.6 }, "n q": { w: 0.6, u: 0.2 }, "n q u": { v: 0.6 } });
  const b = zsreScores(preWrong, postSame, record);
  assert.equal(b.locality, 1, "EasyEdit: nothing changed");
  assert.equal(b.neighborhood_acc, 0.5, "ROME: u is still wrong");
  assert.equal(b.acc_dd, 0, "wrong before and after");
  assert.equal(b.rewrite_success, 1);
});

test("next-token distributions and top-k read any language model's logits (here a hand-set one)", async () => {
  await setup();
  const { nextTokenProbs, nextTokenTopK } = await import("../dist/model/score");
  const m = tableModel({ "a b c": { x: 0.5, z: 0.2 }, "d e": { y: 0.9 } });
  const [p, q] = nextTokenProbs(m, ["a b c", "d e"]);
  assert.equal(p.length, tok.size);
  close(p[tok.encode("x")[0]], 0.5, "p(x | a b c)");
  close(p[tok.encode("z")[0]], 0.2, "p(z | a b c)");
  close(p.reduce((s, v) => s + v, 0), 1, "sums to 1");
  close(q[tok.encode("y")[0]], 0.9, "p(y | d e)");
  const [top] = nextTokenTopK(m, ["a b c"], 2);
  assert.deepEqual(top.top.map((t) => t.token), ["x", "z"]);
  close(top.top[1].prob, 0.2, "second");
});
