/**
 * Durable file writes: nothing is lost when a write fails or the process is killed.
 *
 *   1. the bytes go to a temporary file in the same folder (`.<name>.<pid>.<random>.tmp`), in a
 *      loop until every byte is written (a short write is continued, a write of 0 bytes is an error);
 *   2. the temporary file is fsynced, closed and renamed over the target;
 *   3. the folder is fsynced, so the rename itself survives a crash.
 *
 * A failed write removes its temporary file, leaves the old file as it was, and throws an error
 * that names the path and the cause (ENOSPC, EACCES, ...). Temporary files left by killed
 * processes are removed by `removeStaleTemps` (their pid no longer runs) and never read.
 *
 * The file-system calls go through `FileOps`, so tests can inject short writes and ENOSPC.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";

/** The file-system calls a durable write makes (node's `fs` by default). */
export interface FileOps {
  openSync(file: string, flags: string): number;
  writeSync(fd: number, buf: Uint8Array, offset: number, length: number): number;
  fsyncSync(fd: number): void;
  closeSync(fd: number): void;
  renameSync(from: string, to: string): void;
  unlinkSync(file: string): void;
  mkdirSync(dir: string, opts: { recursive: true }): unknown;
}

export const NODE_FILE_OPS: FileOps = {
  openSync: (f, flags) => fs.openSync(f, flags),
  writeSync: (fd, buf, offset, length) => fs.writeSync(fd, buf, offset, length),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  closeSync: (fd) => fs.closeSync(fd),
  renameSync: (a, b) => fs.renameSync(a, b),
  unlinkSync: (f) => fs.unlinkSync(f),
  mkdirSync: (d, o) => fs.mkdirSync(d, o),
};

/** A write that failed, with the path and the system error code (ENOSPC, EACCES, ...). */
export class WriteError extends Error {
  constructor(readonly file: string, readonly code: string, cause: string) {
    super(`could not write ${file}: ${code}${cause && cause !== code ? ` (${cause})` : ""}; the previous file, if any, is unchanged`);
    this.name = "WriteError";
  }
}

const TEMP = /^\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/** The temporary name a write of `file` uses. */
function tempName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`);
}

/** fsync a folder so that renames into it are durable (a no-op where the platform refuses). */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // Some platforms cannot fsync a directory; the rename is still atomic there.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Write all of `buf` to `fd`, continuing short writes. */
function writeAll(ops: FileOps, fd: number, buf: Uint8Array): void {
  for (let off = 0; off < buf.length; ) {
    const n = ops.writeSync(fd, buf, off, buf.length - off);
    if (!(n > 0)) throw Object.assign(new Error(`wrote 0 of ${buf.length - off} remaining bytes`), { code: "EIO" });
    off += n;
  }
}

/** Write `data` to `file` durably (see the header). Throws a `WriteError`; the old file stays intact. */
export function writeFileDurable(file: string, data: Uint8Array | string, ops: FileOps = NODE_FILE_OPS): void {
  const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const dir = path.dirname(file);
  const tmp = tempName(file);
  let fd: number | undefined;
  let created = false;
  try {
    ops.mkdirSync(dir, { recursive: true });
    fd = ops.openSync(tmp, "wx");
    created = true;
    writeAll(ops, fd, buf);
    ops.fsyncSync(fd);
    ops.closeSync(fd);
    fd = undefined;
    ops.renameSync(tmp, file);
    created = false;
  } catch (e) {
    if (fd !== undefined) {
      try {
        ops.closeSync(fd);
      } catch {
        // already failing: the original error is the one to report
      }
    }
    if (created) {
      try {
        ops.unlinkSync(tmp);
      } catch {
        // the temp file may not exist; stale ones are removed later
      }
    }
    const err = e as NodeJS.ErrnoException;
    throw new WriteError(file, err.code ?? "EIO", err.message ?? String(e));
  }
  if (ops === NODE_FILE_OPS) fsyncDir(dir);
}

/** Is a process with this pid running (our lock and temp names carry the writer's pid)? */
export function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Remove temporary files in `dir` left by processes that no longer run. @returns the removed names */
export function removeStaleTemps(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of fs.readdirSync(dir)) {
    const m = TEMP.exec(name);
    if (!m || pidRuns(Number(m[2]))) continue;
    try {
      fs.rmSync(path.join(dir, name), { force: true, recursive: true });
      removed.push(name);
    } catch {
      // another process may have removed it
    }
  }
  return removed;
}

/** Is `name` a temporary file of a durable write (never a real file of a folder)? */
export function isTempName(name: string): boolean {
  return TEMP.test(name);
}
