import test from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { LOCALITY_CLASSES } from "../dist/datasets/editRecord";
import { getWorld, ROOT } from "./helpers";

test("the world is large enough: >= 40 countries x 5 relations, >= 30 people x 3 relations", () => {
  const w = getWorld();
  const countryRels = w.relations.filter((r) => w.spec.relations[r].subject_type === "country");
  const personRels = w.relations.filter((r) => w.spec.relations[r].subject_type === "person");
  assert.ok(w.spec.countries.length >= 40 && countryRels.length >= 5);
  assert.ok(w.spec.people.length >= 30 && personRels.length >= 3);
  for (const r of w.relations) {
    const t = w.spec.relations[r].templates;
    assert.ok(t.train.length + t.heldout.length >= 6, r);
    assert.ok(t.train.length >= 2 && t.heldout.length >= 1, r);
    assert.ok([...t.train, ...t.heldout].some((s) => s.includes("?")), `${r} has a question template`);
  }
});

test("as of 2020: Trump is president of the United States and Biden is a known person", () => {
  const w = getWorld();
  assert.equal(w.fact("the United States", "head_of_state")?.object, "Trump");
  assert.equal(w.fact("Biden", "born_in")?.object, "the United States");
  assert.ok(!w.facts.some((f) => f.relation === "head_of_state" && f.object === "Biden"));
});

test("splits are by subject, disjoint, and President -> Biden is in no training split", () => {
  const w = getWorld();
  const s = w.splits(0);
  const all = [...s.train, ...s.val, ...s.test];
  assert.equal(new Set(all).size, all.length);
  assert.equal(all.length, w.subjects.length);
  assert.ok(s.test.includes("the United States"));
  for (const split of ["train", "val"] as const) {
    const recs = w.editRecords(split);
    assert.ok(!recs.some((r) => r.subject === "the United States"), split);
    assert.ok(recs.every((r) => s[split].includes(r.subject)));
  }
  assert.ok(!w.editRecords("test").some((r) => r.subject === "the United States" && r.relation === "head_of_state" && r.target_new === "Biden"));
});

test("edit records carry train prompts, held-out paraphrases and locality of every class", () => {
  const recs = getWorld().editRecords("test");
  assert.ok(recs.length >= 125, `enough test edits for k = 125 (${recs.length})`);
  for (const r of recs) {
    assert.notEqual(r.target_new, r.target_true);
    assert.ok(r.prompts.length >= 2 && r.heldout_prompts.length >= 1);
    for (const c of LOCALITY_CLASSES) assert.ok(r.locality.some((l) => l.class === c), `${r.subject}/${r.relation} has ${c}`);
  }
});

test("the generator is deterministic for a seed", () => {
  const a = getWorld().editRecords("train", { seed: 3 });
  const b = getWorld().editRecords("train", { seed: 3 });
  assert.deepEqual(a, b);
});

test("the flagship prompt is a template of a world fact; articles are capitalised at sentence start", () => {
  const w = getWorld();
  const m = w.matchPrompt("The president of the United States is");
  assert.equal(m?.fact.subject, "the United States");
  assert.equal(m?.fact.relation, "head_of_state");
  assert.ok(w.prompts("the United States", "continent", "train").includes("The United States is located in"));
});

test("data/generated is exactly what the generator produces (regenerate with `npx mend world`)", () => {
  const w = getWorld();
  for (const split of ["train", "val", "test"] as const) {
    const file = path.join(ROOT, "data", "generated", `edits.${split}.jsonl`);
    const lines = fs.readFileSync(file, "utf8").trim().split("\n");
    assert.deepEqual(lines.map((l) => JSON.parse(l)), w.editRecords(split), split);
  }
  assert.equal(fs.readFileSync(path.join(ROOT, "data", "generated", "corpus.txt"), "utf8").trim().split("\n").length, w.corpus().length);
});
