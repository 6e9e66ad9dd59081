/**
 * The fault sweep's fixtures: every case builds what it needs in a fresh temporary folder (copies of
 * the shipped base model and editor, generated GPT-2 folders) and runs the `mend` command line or the
 * library against it. `npm run faults` runs the sweep alone; `npm test` runs it with the unit tests.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ROOT } from "../helpers";

export { ROOT };

/** A fresh temporary folder. */
export function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `fault-${prefix}-`));
}

/** Run `mend` (the built CLI) with a working folder; stdout, stderr and exit status. */
export function mend(args: readonly string[], opts: { cwd?: string; timeout?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), ...args], { encoding: "utf8", timeout: opts.timeout ?? 180_000, cwd: opts.cwd ?? ROOT, maxBuffer: 64 * 2 ** 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function assertOk(r: { status: number | null; stderr: string }, what: string): void {
  assert.equal(r.status, 0, `${what} failed: ${r.stderr.slice(-2000)}`);
}

export function assertFails(r: { status: number | null; stderr: string }, message: RegExp, what: string): void {
  assert.ok(r.status === 1 || r.status === 2, `${what} should fail; stderr: ${r.stderr.slice(-1000)}`);
  assert.match(r.stderr, message, what);
}

/** A copy of a shipped checkpoint folder (base model or editor) in `dir`. */
export function copyCheckpoint(name: "base" | "editor", dir: string): string {
  fs.cpSync(path.join(ROOT, "checkpoints", name), dir, { recursive: true });
  return dir;
}

/** The pid of a process that has exited (what a killed writer leaves in its file names). */
export function deadPid(): number {
  return Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout);
}

/** What a writer killed between the two renames of a folder swap leaves: the complete folder aside, nothing under the name. */
export function interruptSwap(dir: string): string {
  const aside = path.join(path.dirname(dir), `.${path.basename(dir)}.old.${deadPid()}.0123abcd`);
  fs.renameSync(dir, aside);
  return aside;
}
