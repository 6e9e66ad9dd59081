/**
 * Children that die with their parent: a `mend` process started by another (`mend paper`'s trainings
 * and evaluations, `mend eval`'s workers) carries its parent's pid and stops once that parent is
 * gone, even after a SIGKILL, instead of working on as an orphan that holds its run lock. Kept apart
 * from common.ts so that every command can start the watch without loading the evaluation code.
 */
/** The environment of a `mend` child process: it exits when this process is gone (`watchParent`). */
export function childEnv(): NodeJS.ProcessEnv {
  return { ...process.env, MEND_PARENT_PID: String(process.pid) };
}

/**
 * In a child started with `childEnv`: exit once the parent is gone (killed, even with SIGKILL, the
 * child is handed to another parent), so no orphan keeps working or holds a run lock. Checked every
 * second between steps of the child's work.
 */
export function watchParent(): void {
  const parent = Number(process.env.MEND_PARENT_PID);
  if (!Number.isInteger(parent) || parent <= 0) return;
  setInterval(() => {
    if (process.ppid !== parent) {
      console.error(`mend: the parent process ${parent} is gone; stopping`);
      process.exit(143);
    }
  }, 1000).unref();
}
