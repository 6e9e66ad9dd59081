/** Shared fixtures for the tests: a tiny seeded GPT-2 over the real world vocabulary. */
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { updateEditorStats } from "../dist/mend/edit";
import { createEditor, DEFAULT_EDITOR_CONFIG, Editor, lastBlocksMlp } from "../dist/mend/editor";
import { captureFactors, disposeFactors } from "../dist/mend/factor";
import { initBackend } from "../dist/model/backend";
import { DEFAULT_GPT2_CONFIG, GPT2Config } from "../dist/model/config";
import { initGPT } from "../dist/model/gpt";
import { Model } from "../dist/model/modelFolder";
import { applyUpdates, ParamsModel } from "../dist/model/paramsModel";
import { denseDelta } from "../dist/model/weightUpdate";
import { disposeEdit, type EditResult } from "../dist/mend/edit";
import { WordTokenizer } from "../dist/model/wordTokenizer";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { World } from "../dist/world/world";

export const ROOT = path.join(__dirname, "..");
/** The dataset excerpts shipped in the project (data/README.md). */
export const ZSRE_FILE = path.join(ROOT, "data", "zsre", "zsre_mend_train-800.json");
export const CF_ROME_FILE = path.join(ROOT, "data", "counterfact", "counterfact_rome-200.json");
export const CF_EASYEDIT_FILE = path.join(ROOT, "data", "counterfact", "counterfact-val.json");

let world: World | null = null;
export function getWorld(): World {
  return (world ??= World.load(path.join(ROOT, "data", "world.json")));
}

/** The backend under test: MEND_BACKEND or wasm (what CI runs). */
export async function setup(): Promise<void> {
  await initBackend(process.env.MEND_BACKEND ?? "wasm");
}

export function tinyModel(seed = 0, over: Partial<GPT2Config> = {}): Model {
  const tokenizer = WordTokenizer.fromTexts(getWorld().texts());
  const config: GPT2Config = { ...DEFAULT_GPT2_CONFIG, n_embd: 16, n_layer: 2, n_head: 2, n_positions: 24, ...over, vocab_size: tokenizer.size };
  const params = initGPT(config, seed);
  return new ParamsModel(config, params, tokenizer, { owned: Object.values(params) });
}

/** The model an edit gives (W + ΔW), for tests that read its weights; dispose it. */
export function applied(m: Model, r: Pick<EditResult, "update">): ParamsModel {
  return applyUpdates(m, [r.update]);
}

/** The model an edit gives, freeing the edit's update (for tests that only need the model). */
export function appliedEdit(m: Model, r: EditResult): ParamsModel {
  const out = applyUpdates(m, [r.update]);
  disposeEdit(r);
  return out;
}

/** Max |ΔW_a − ΔW_b| of weight `name` over two edits' updates. */
export function updateDiff(a: Pick<EditResult, "update">, b: Pick<EditResult, "update">, name: string): number {
  return tf.tidy(() => {
    const [da, db] = [denseDelta(a.update[name]), denseDelta(b.update[name])];
    return tf.max(tf.abs(tf.sub(da, db))).dataSync()[0];
  });
}

/** Max |a - b| over all elements. */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** Run `fn` and return how many tensors it left behind. */
export async function leaked(fn: () => Promise<void> | void): Promise<number> {
  const before = tf.memory().numTensors;
  await fn();
  return tf.memory().numTensors - before;
}

/**
 * An editor whose statistics come from 40 training edits (as after some meta-training). With only a
 * handful of rows some σ are tiny, normalised inputs explode and edits become chaotic.
 */
export function warmEditor(m: Model, seed = 0): Editor {
  const inner = lastBlocksMlp(m.config.n_layer, 2);
  const e = createEditor({ ...DEFAULT_EDITOR_CONFIG, innerParams: inner, rank: 16 }, Object.fromEntries(inner.map((n) => [n, m.params[n].shape])), seed);
  const recs = getWorld().editRecords("train").slice(0, 40);
  const b = makeBatch(m.tokenizer, recs.map((r) => ({ prompt: r.prompts[0], target: r.target_new })), "target", m.config.n_positions);
  const f = captureFactors(m.params, m.config, b, inner, recs.map((_, i) => i));
  updateEditorStats(e, f);
  disposeFactors(f);
  disposeBatch(b);
  return e;
}
