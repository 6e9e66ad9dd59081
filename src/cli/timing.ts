/** Wall-clock timing for benchmarks: medians after warm-up, alternating runs for ratios. */

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
