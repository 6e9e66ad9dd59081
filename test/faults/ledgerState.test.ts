/**
 * A ledger's method state against its entries: `mend ledger --undo` refuses where a later edit's
 * state was computed with the undone one (LocFT-BF would tune the undone fact again), `--replay`
 * forgets it (state and weights equal the stream made afresh without it), and a state that
 * remembers a request no edit made (edits.json rewritten, no manifest to catch it) is refused, as is
 * an AlphaEdit or UltraEdit state whose counts are not its edits' or whose weights are not theirs.
 * Each entry records the edit its state was carried on from, so a fresh start is not read as a run.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { checkLedgerStates, stateCarriedPast } from "../../dist/lifelong/ledgerState";
import type { LedgerEntry } from "../../dist/model/editLedger";
import { decodeSafetensors } from "../../dist/model/safetensors";
import { assertFails, assertOk, mend, tmp } from "./helpers";

const FACTS = [
  ["The capital of Kenya is", "Lima"],
  ["The capital of Peru is", "Oslo"],
  ["The capital of Chile is", "Rome"],
] as const;
const W = "h.3.mlp.c_proj.weight";

/** Edit `facts` one by one with LocFT-BF into `dir` (the first from the shipped base, the rest in place). */
function stream(dir: string, facts: readonly (readonly [string, string])[]): void {
  facts.forEach(([prompt, target], i) => {
    const from = i === 0 ? [] : ["--model", dir, "--force"];
    assertOk(mend(["edit", ...from, "--method", "LocFT-BF", "--weights", W, "--prompt", prompt, "--target", target, "--save", dir]), `LocFT-BF edit ${i + 1}`);
  });
}

const edits = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, "edits.json"), "utf8"));
const weights = (dir: string) => decodeSafetensors(fs.readFileSync(path.join(dir, "model.safetensors")), dir).tensors;

test("LocFT-BF: undo of an edit a later state carries is refused; replay forgets it, as the stream made without it", () => {
  const dir = tmp("ledger-state");
  try {
    const all = path.join(dir, "all");
    stream(all, FACTS);
    assert.deepEqual(edits(all).entries.at(-1).state.meta.requests.map((r: { prompt: string }) => r.prompt), FACTS.map((f) => f[0]));
    assertFails(mend(["ledger", "--model", all, "--undo", "2", "--save", path.join(dir, "u")]), /edit 2 \(LocFT-BF\) left method state that the later edit\(s\) 3 carried on: .*LocFT-BF would tune "The capital of Peru is" -> "Oslo" again on its next edit\)\. Use --replay 2 --save DIR/, "undo 2");
    assert.ok(!fs.existsSync(path.join(dir, "u")), "nothing written");
    assertOk(mend(["ledger", "--model", all, "--undo", "3", "--save", path.join(dir, "u3")]), "undoing the newest edit carries nothing");
    const replayed = path.join(dir, "r");
    assertOk(mend(["ledger", "--model", all, "--replay", "2", "--save", replayed]), "replay without 2");
    const fresh = path.join(dir, "fresh");
    stream(fresh, [FACTS[0], FACTS[2]]);
    assert.deepEqual(edits(replayed).entries.at(-1).state.meta, edits(fresh).entries.at(-1).state.meta, "the replayed state remembers facts 1 and 3 only, as the fresh stream's");
    const [a, b] = [Array.from(weights(replayed)[W].data), Array.from(weights(fresh)[W].data)];
    const gap = a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
    assert.ok(gap <= 1e-6, `replayed and fresh weights differ by ${gap}`);
    // a state that remembers a request no edit made: refused before editing
    const forged = edits(all);
    forged.entries.at(-1).state.meta.requests.push({ prompt: "The capital of France is", target: "Lima" });
    fs.writeFileSync(path.join(all, "edits.json"), JSON.stringify(forged));
    fs.rmSync(path.join(all, "manifest.json"));
    assertFails(mend(["edit", "--model", all, "--method", "LocFT-BF", "--weights", W, "--prompt", "The capital of Japan is", "--target", "Cairo", "--save", all, "--force"]), /edit 3's LocFT-BF state remembers 4 request\(s\), but its edits \(1, 2, 3\) made 3; request 4 it remembers, "The capital of France is" -> "Lima", was made by no edit/, "planted request");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A ledger entry as the checks read it: one low-rank change of `rows` key rows to weight W. */
function entry(id: number, method: string, o: { meta?: Record<string, unknown>; rows?: number; stateFrom?: number | null } = {}) {
  const update = { [W]: { alpha: 1, keys: { shape: [o.rows ?? 1, 512] }, values: { shape: [o.rows ?? 1, 128] }, requests: [0] } };
  const tensors = method === "UltraEdit" ? { u_mean: { shape: [512] }, u_m2: { shape: [512] }, delta_mean: { shape: [128] }, delta_m2: { shape: [128] } } : { a_inv: { shape: [512, 512] } };
  return { id, method, requests: [{ prompt: `p${id}`, target: "t" }], update, latencyMs: 1, time: "", ...(o.meta ? { state: { method, meta: o.meta, tensors } } : {}), ...(o.stateFrom !== undefined ? { stateFrom: o.stateFrom } : {}) } as unknown as LedgerEntry;
}

test("AlphaEdit: a state that counts more edits than its run of edits is refused", () => {
  assert.doesNotThrow(() => checkLedgerStates([entry(1, "MEND"), entry(2, "AlphaEdit", { meta: { edits: 1 } }), entry(3, "AlphaEdit", { meta: { edits: 2 } })], "x"));
  assert.throws(() => checkLedgerStates([entry(1, "AlphaEdit", { meta: { edits: 1 } }), entry(2, "MEND"), entry(3, "AlphaEdit", { meta: { edits: 2 } })], "x"), /x: edit 3's AlphaEdit state counts 2 edit\(s\), but its run of AlphaEdit edits \(3\) has 1/);
});

test("UltraEdit: a state must count the key rows its edits added, and be kept for the weights they changed", () => {
  assert.doesNotThrow(() => checkLedgerStates([entry(1, "UltraEdit", { meta: { count: 2 }, rows: 2 }), entry(2, "UltraEdit", { meta: { count: 5 }, rows: 3 })], "x"));
  assert.throws(() => checkLedgerStates([entry(1, "UltraEdit", { meta: { count: 2 }, rows: 2 }), entry(2, "UltraEdit", { meta: { count: 4 }, rows: 3 })], "x"), /x: edit 2's UltraEdit state counts 4 key row\(s\) of h\.3\.mlp\.c_proj\.weight, but its run of UltraEdit edits \(1, 2\) made 5/);
  assert.throws(() => checkLedgerStates([entry(1, "UltraEdit", { meta: { "h.2.mlp.c_proj.weight": { count: 1 }, [W]: { count: 1 } } })], "x"), /x: edit 1's UltraEdit state is kept for h\.2\.mlp\.c_proj\.weight, h\.3\.mlp\.c_proj\.weight, but the edit changed h\.3\.mlp\.c_proj\.weight/);
  // a tensor of the state missing, or of another shape (before: a raw "Argument 'x' passed to 'clone'" at the next edit)
  const lacking = entry(1, "UltraEdit", { meta: { count: 1 } }) as unknown as { state: { tensors: Record<string, unknown> } };
  delete lacking.state.tensors.u_m2;
  assert.throws(() => checkLedgerStates([lacking as unknown as LedgerEntry], "x"), /x: edit 1's UltraEdit state must hold the tensors u_mean, u_m2, delta_mean, delta_m2; u_m2 missing/);
  const reshaped = entry(1, "AlphaEdit", { meta: { edits: 1 } }) as unknown as { state: { tensors: Record<string, unknown> } };
  reshaped.state.tensors.a_inv = { shape: [128, 128] };
  assert.throws(() => checkLedgerStates([reshaped as unknown as LedgerEntry], "x"), /x: edit 1's AlphaEdit state tensor a_inv has shape \[128,128\], expected \[512,512\]/);
});

test("the edit a state was carried on from is recorded: a fresh start after an undo is not read as a run, a link to another method is refused", () => {
  // 1 and 3 are UltraEdit edits, but 3 started afresh (an undo of 2 had left no saved state): each counts its own rows
  const afterUndo = [entry(1, "UltraEdit", { meta: { count: 1 }, stateFrom: null }), entry(3, "UltraEdit", { meta: { count: 1 }, stateFrom: null })];
  assert.doesNotThrow(() => checkLedgerStates(afterUndo, "x"));
  assert.deepEqual(stateCarriedPast(afterUndo, 1), [], "undoing 1 leaves 3's state as it is");
  const carried = [entry(1, "UltraEdit", { meta: { count: 1 }, stateFrom: null }), entry(2, "MEND"), entry(3, "UltraEdit", { meta: { count: 2 }, stateFrom: 1 })];
  assert.doesNotThrow(() => checkLedgerStates(carried, "x"));
  assert.deepEqual(stateCarriedPast(carried, 1).map((e) => e.id), [3]);
  assert.throws(() => checkLedgerStates([entry(1, "MEND"), entry(2, "UltraEdit", { meta: { count: 2 }, stateFrom: 1 })], "x"), /x: edit 2's UltraEdit state is recorded as carried on from edit 1, a MEND edit/);
  // ledgers written before the link was recorded: a run of one method carries one state
  assert.deepEqual(stateCarriedPast([entry(1, "UltraEdit", { meta: { count: 1 } }), entry(2, "UltraEdit", { meta: { count: 2 } })], 1).map((e) => e.id), [2]);
});
