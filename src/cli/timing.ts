/** Wall-clock timing for benchmarks: medians after warm-up, alternating runs for ratios; the timed forward+backward. */
import * as tf from "@tensorflow/tfjs";
import { gptForward } from "../model/gpt";
import { meanNll } from "../model/loss";
import { applyUpdates, type ModelView } from "../model/paramsModel";
import { disposeUpdate, type ModelUpdate } from "../model/weightUpdate";
import type { Batch } from "../model/batch";

/** Median wall time of `fn` in ms over `reps` runs after `warmup` runs. */
export async function timeIt(fn: () => Promise<void> | void, reps: number, warmup = 2): Promise<number> {
  return (await timeAlternately([fn], reps, warmup))[0];
}

/**
 * Median wall times of `a` and `b` in ms, run alternately `reps` times each after warm-up, so that
 * drift in the machine's speed (other processes, GC, thermal) hits both alike: for ratios.
 */
export async function timePair(a: () => Promise<void>, b: () => Promise<void>, reps: number, warmup = 3): Promise<[number, number]> {
  return (await timeAlternately([a, b], reps, warmup)) as [number, number];
}

/** Median wall time in ms of each of `fns`, run in turn `reps` times each after `warmup` rounds. */
async function timeAlternately(fns: readonly (() => Promise<void> | void)[], reps: number, warmup: number): Promise<number[]> {
  for (let i = 0; i < warmup; i++) for (const fn of fns) await fn();
  const ts = fns.map((): number[] => []);
  for (let i = 0; i < reps; i++) {
    for (const [j, fn] of fns.entries()) {
      const t0 = performance.now();
      await fn();
      ts[j].push(performance.now() - t0);
    }
  }
  return ts.map((t) => t.sort((x, y) => x - y)[Math.floor(t.length / 2)]);
}

/** Gradients of the mean NLL of `b` w.r.t. the named weights, read back (one timed forward+backward). */
export async function gradsOf(model: Pick<ModelView, "params" | "config">, b: Batch, names: readonly string[]): Promise<void> {
  const gs = tf.tidy(() => tf.grads((...ws: tf.Tensor[]) => meanNll(gptForward(model.params, model.config, b.inputIds, { attentionMask: b.attentionMask, replace: Object.fromEntries(names.map((n, i) => [n, ws[i]])) }).logits, b.labels))(names.map((n) => model.params[n])));
  await gs[0].data();
  tf.dispose(gs);
}

/** An edit and the edited model it gives (W + ΔW), timed to the first edited weight's data: what a user waits for. */
export async function editAndApply(model: ModelView, edit: () => { update: ModelUpdate }, first: string): Promise<void> {
  const { update } = edit();
  const edited = applyUpdates(model, [update]);
  await edited.params[first].data();
  edited.dispose();
  disposeUpdate(update);
}
