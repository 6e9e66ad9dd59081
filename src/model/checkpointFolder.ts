/**
 * Checkpoint folders (a model, an editor, a training run's `best` or `last`) written as one unit,
 * so that a folder is always either the old one or the new one, never a mix:
 *
 *   1. every file is written durably (durable.ts) into a temporary sibling folder, and
 *      `manifest.json` last: the folder's kind and every file with its size and SHA-256;
 *   2. the old folder (if any) is renamed aside (`.<name>.old.<pid>.<random>`), the new one renamed
 *      into place, the old one removed. A process killed between the two renames leaves no folder
 *      under the name and the complete old one aside: `recoverFolder` (run by every write, and by
 *      every read through `recoverForRead` before it looks for the folder) renames it back.
 *
 * Loading checks the manifest: a missing file, another size or another hash is an error that
 * names the file. Folders without a manifest (written by other tools, e.g. a Hugging Face download)
 * are read as they are. A lock file beside the folder (`.<name>.lock`, holding the writer's pid)
 * makes a second concurrent writer fail clearly.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { fsyncDir, isTempName, pidRuns, removeStaleTemps, writeFileDurable } from "./durable";
import { readJsonFile } from "./jsonFile";

export const MANIFEST = "manifest.json";

export interface Manifest {
  format: "mend-ts-folder";
  /** What the folder holds: "model", "editor", "pretrain-run", "editor-run", ... */
  kind: string;
  files: Record<string, { bytes: number; sha256: string }>;
}

/** SHA-256 of bytes, in hex. */
export const sha256 = (b: Uint8Array): string => crypto.createHash("sha256").update(b).digest("hex");

const asideName = (dir: string) => path.join(path.dirname(dir), `.${path.basename(dir)}.old.${process.pid}.${crypto.randomBytes(4).toString("hex")}`);
const ASIDE = (base: string) => new RegExp(`^\\.${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.old\\.(\\d+)\\.[0-9a-f]{8}$`);

const lockPath = (dir: string) => path.join(path.dirname(dir), `.${path.basename(dir)}.lock`);

/** Put a folder back that a killed writer left aside, and remove finished writers' leftovers. */
export function recoverFolder(dir: string): void {
  const parent = path.dirname(dir);
  if (!fs.existsSync(parent)) return;
  const re = ASIDE(path.basename(dir));
  for (const name of fs.readdirSync(parent)) {
    const m = re.exec(name);
    if (!m || pidRuns(Number(m[1]))) continue;
    const aside = path.join(parent, name);
    if (!fs.existsSync(dir)) fs.renameSync(aside, dir); // killed between the two renames: the old folder is the good one
    else fs.rmSync(aside, { recursive: true, force: true }); // killed after the swap: the old folder is garbage
  }
  const lock = lockPath(dir);
  if (fs.existsSync(lock) && !pidRuns(Number(fs.readFileSync(lock, "utf8")))) fs.rmSync(lock, { force: true }); // a killed writer's
  removeStaleTemps(parent);
}

/**
 * Before a folder is read: put back a complete copy that a killed writer left aside (recoverFolder).
 * Where that cannot be done (e.g. a read-only parent folder) and nothing is under the name, the
 * error names the copy and the command that restores it.
 */
export function recoverForRead(dir: string): void {
  try {
    recoverFolder(dir);
  } catch (e) {
    if (fs.existsSync(dir)) return; // the folder is there; the leftovers can wait for a writer
    const parent = path.dirname(dir);
    const re = ASIDE(path.basename(dir));
    const aside = fs.existsSync(parent) ? fs.readdirSync(parent).find((n) => re.test(n)) : undefined;
    if (aside) throw new Error(`${dir} is missing, but an interrupted write left the complete folder aside as ${path.join(parent, aside)}, and it could not be put back (${(e as Error).message}); restore it with: mv "${path.join(parent, aside)}" "${dir}"`);
    throw e;
  }
}

/** Which folder is at `dir` now (inode and birth time), or null when none is: a writer's swap changes it. */
function folderIdentity(dir: string): string | null {
  try {
    const s = fs.statSync(dir);
    return `${s.ino}:${s.birthtimeMs}`;
  } catch {
    return null;
  }
}

/**
 * `read()` (which reads several files of the folder `dir`), done again when it failed because a
 * writer replaced the folder while it ran (`writeFolder` swaps whole folders: a reader between or
 * across the two renames sees no folder, or files of both). An error while the same folder stayed
 * in place is the folder's own and is thrown at once. `read` must free what it made before throwing.
 */
export function readConsistently<T>(dir: string, read: () => T, tries = 5): T {
  for (let attempt = 1; ; attempt++) {
    const before = folderIdentity(dir);
    try {
      return read();
    } catch (e) {
      if (attempt >= tries || folderIdentity(dir) === before) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50 * attempt); // let the writer finish its swap
    }
  }
}

/** A write error's code in words (the code kept): a read-only file system, no permission, ... */
export function writeErrorText(e: unknown, dir: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  const parent = path.dirname(path.resolve(dir));
  const why: Record<string, string> = {
    EROFS: "the file system is read-only",
    EACCES: "no permission to write there",
    EPERM: "no permission to write there",
    ENOSPC: "the disk is full",
    ENOTDIR: "a part of the path is a file, not a folder",
    ENOENT: fs.existsSync(parent) ? `${parent} cannot be written to (read-only, or no permission)` : `a folder on the way to it cannot be created (read-only, or no permission)`,
  };
  return code ? `${code}: ${why[code] ?? (e as Error).message}` : (e as Error).message;
}

/** The lock a training run holds on its run folder (`<runDir>/.run.lock`): the holder's pid and start time. */
export const RUN_LOCK = ".run.lock";

/**
 * Hold a run folder for the whole run: a second run on it is refused at once, naming the holder's
 * pid and start time; a lock left by a process that no longer runs is taken over (moved aside
 * atomically first, so two runs cannot both take it). The folder is created here, so an unwritable
 * run folder fails before any work. @returns the release function (call it when the run ends): it
 * removes the lock, and the folder too when the run left it empty (a run refused at its start).
 */
export function lockRunFolder(runDir: string): () => void {
  const created = !fs.existsSync(runDir);
  try {
    fs.mkdirSync(runDir, { recursive: true });
  } catch (e) {
    throw new Error(`cannot create the run folder ${runDir}: ${writeErrorText(e, runDir)}`);
  }
  const release = holdLockFile(path.join(runDir, RUN_LOCK), {
    cannotWrite: (why) => `cannot write to the run folder ${runDir}: ${why}`,
    ownProcess: (started) => `${runDir} is already used by a run in this process (started ${started})`,
    held: (pid, started) => `${runDir} is used by another run (pid ${pid}, started ${started}); wait for it to finish, or choose another --run-dir`,
    busy: () => `${runDir} is being locked by another run just now; try again`,
    failed: (lock) => `${runDir}: could not take the run lock (${lock})`,
  });
  return () => {
    release();
    try {
      if (created && fs.readdirSync(runDir).length === 0) fs.rmdirSync(runDir);
    } catch {
      // already gone
    }
  };
}

/** The lock a command holds on a model folder for a whole read-modify-write (an edit appended, an undo). */
const editLockPath = (dir: string) => path.join(path.dirname(dir), `.${path.basename(dir)}.edit.lock`);

/**
 * Hold the model folder `dir` (it need not exist yet) for a whole read-modify-write: `mend edit
 * --save` (appending to a ledger in place included), `mend ledger --undo/--replay --save`. A second
 * command on the same folder is refused at its start, naming the holder's pid and start time; a
 * lock left by a process that no longer runs is taken over. The lock sits beside the folder, which
 * is replaced as a unit when saved. @returns the release function.
 */
export function lockModelFolder(given: string): () => void {
  const dir = resolveLinks(given);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  return holdLockFile(editLockPath(dir), {
    cannotWrite: (why) => `cannot write beside the model folder ${given} (its lock ${editLockPath(dir)}): ${why}`,
    ownProcess: (started) => `${given} is already being edited in this process (since ${started})`,
    held: (pid, started) => `${given} is being edited by another mend process (pid ${pid}, started ${started}); wait for it to finish: two edits of one folder at once would lose one of them`,
    busy: () => `${given} is being locked by another mend process just now; try again`,
    failed: (lock) => `${given}: could not take its edit lock (${lock})`,
  });
}

/**
 * Create `lock` holding this process's pid and start time, or explain why not (`say`): held by a
 * live process, by this one, or being written just now. A lock whose process is gone is moved aside
 * atomically and taken (of several takers, one wins). @returns the release function.
 */
function holdLockFile(lock: string, say: { cannotWrite: (why: string) => string; ownProcess: (started?: string) => string; held: (pid: number, started?: string) => string; busy: () => string; failed: (lock: string) => string }): () => void {
  const mine = JSON.stringify({ pid: process.pid, started: new Date().toISOString() });
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      fs.writeFileSync(lock, mine, { flag: "wx" });
      return () => {
        try {
          if (fs.readFileSync(lock, "utf8") === mine) fs.unlinkSync(lock);
        } catch {
          // already gone
        }
      };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EEXIST") throw new Error(say.cannotWrite(writeErrorText(e, lock)));
    }
    let holder: { pid?: number; started?: string } = {};
    try {
      holder = JSON.parse(fs.readFileSync(lock, "utf8"));
    } catch {
      // being written, or damaged: treated as held unless its writer is gone (below)
    }
    if (holder.pid === process.pid) throw new Error(say.ownProcess(holder.started));
    if (holder.pid && pidRuns(holder.pid)) throw new Error(say.held(holder.pid, holder.started));
    let written: number;
    try {
      written = fs.statSync(lock).mtimeMs;
    } catch {
      continue; // released meanwhile: try again
    }
    if (!holder.pid && Date.now() - written < 5000) throw new Error(say.busy());
    const stale = `${lock}.stale.${process.pid}.${crypto.randomBytes(4).toString("hex")}`;
    try {
      fs.renameSync(lock, stale); // only one of several takers of a stale lock gets it
      fs.rmSync(stale, { force: true });
    } catch {
      // another one moved it first: try again
    }
  }
  throw new Error(say.failed(lock));
}

/**
 * The path a folder name stands for, symbolic links resolved: the real path when it exists, else the
 * real path of its nearest existing ancestor joined with the rest. A link whose target is missing is
 * an error that says so.
 */
export function resolveLinks(p: string): string {
  const abs = path.resolve(p);
  let stat: fs.Stats | undefined;
  try {
    stat = fs.lstatSync(abs);
  } catch {
    stat = undefined;
  }
  if (stat?.isSymbolicLink() && !fs.existsSync(abs)) throw new Error(`${p} is a link to ${fs.readlinkSync(abs)}, which does not exist`);
  if (stat) return fs.realpathSync(abs);
  const parent = path.dirname(abs);
  return parent === abs ? abs : path.join(resolveLinks(parent), path.basename(abs));
}

/** A file of the folder itself: a non-empty name with no separator, not "." or "..", no NUL. */
export function isPlainFileName(name: string): boolean {
  return name.length > 0 && name !== "." && name !== ".." && !/[/\\\0]/.test(name);
}

const a = (kind: string) => `${/^[aeiou]/.test(kind) ? "an" : "a"} ${kind}`;

/** Take the folder's lock, run `fn`, release it. A live second writer is an error naming its pid. */
export function withFolderLock<T>(dir: string, fn: () => T): T {
  const lock = lockPath(dir);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: "wx" });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw e;
      const pid = Number(fs.readFileSync(lock, "utf8"));
      if (pid && pid !== process.pid && pidRuns(pid)) throw new Error(`${dir} is being written by another mend process (pid ${pid}); wait for it or choose another folder`);
      fs.rmSync(lock, { force: true }); // left by a killed writer
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/**
 * Write `files` (name -> bytes) as the folder `dir` of `kind`, replacing any old one as a unit.
 * `check` runs under the folder's lock before anything is written (an overwrite guard that a
 * concurrent writer cannot slip past).
 */
export function writeFolder(given: string, kind: string, files: Readonly<Record<string, Uint8Array | string>>, opts: { check?: () => void } = {}): void {
  const dir = resolveLinks(given); // through a link: the folder it points to is written, the link stays
  for (const name of Object.keys(files)) {
    if (name === MANIFEST || !isPlainFileName(name) || isTempName(name)) throw new Error(`writeFolder: bad file name "${name}"`);
  }
  withFolderLock(dir, () => {
    recoverFolder(dir);
    opts.check?.();
    const parent = path.dirname(dir);
    const tmp = path.join(parent, `.${path.basename(dir)}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`);
    const manifest: Manifest = { format: "mend-ts-folder", kind, files: {} };
    try {
      fs.mkdirSync(tmp, { recursive: true });
      for (const [name, data] of Object.entries(files)) {
        const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
        writeFileDurable(path.join(tmp, name), buf);
        manifest.files[name] = { bytes: buf.length, sha256: sha256(buf) };
      }
      writeFileDurable(path.join(tmp, MANIFEST), JSON.stringify(manifest, null, 1) + "\n");
      fsyncDir(tmp);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    const aside = fs.existsSync(dir) ? asideName(dir) : null;
    try {
      if (aside) fs.renameSync(dir, aside);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw new Error(`could not replace ${dir}: ${writeErrorText(e, dir)}; it is unchanged`);
    }
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      if (aside) fs.renameSync(aside, dir); // the old folder back under its name
      fs.rmSync(tmp, { recursive: true, force: true });
      throw new Error(`could not write ${dir}: ${writeErrorText(e, dir)}; it is unchanged`);
    }
    fsyncDir(parent);
    if (aside) fs.rmSync(aside, { recursive: true, force: true });
  });
}

/** The folder's manifest, or null for a folder without one. */
export function readManifest(dir: string): Manifest | null {
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file)) return null;
  const m = readJsonFile(file) as Manifest;
  const entriesOk = m && typeof m.files === "object" && !Array.isArray(m.files) && Object.values(m.files).every((f) => f && Number.isSafeInteger(f.bytes) && typeof f.sha256 === "string");
  if (m?.format === "mend-ts-folder" && !entriesOk) throw new Error(`${file}: every file entry must have "bytes" and "sha256"`);
  if (m?.format !== "mend-ts-folder" || typeof m.kind !== "string" || typeof m.files !== "object") throw new Error(`${file}: not a mend-ts folder manifest`);
  return m;
}

/**
 * Check a folder against its manifest (after recovering an interrupted write). Throws an error that
 * names the file that is missing or differs. @returns the manifest, or null without one
 */
export function verifyFolder(dir: string, kinds?: readonly string[]): Manifest | null {
  recoverForRead(dir);
  const m = readManifest(dir);
  if (!m) return null;
  if (kinds && !kinds.includes(m.kind)) throw new Error(`${dir}: the folder holds ${a(m.kind)}, not ${kinds.map(a).join(" or ")} (its manifest.json says so)`);
  for (const name of Object.keys(m.files)) {
    if (!isPlainFileName(name) || name === MANIFEST) throw new Error(`${path.join(dir, MANIFEST)}: lists ${JSON.stringify(name).slice(0, 100)}, which is not a file of this folder; the manifest decides what the folder holds, so the folder is refused`);
  }
  for (const [name, want] of Object.entries(m.files)) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) throw new Error(`${file}: missing (the folder's manifest lists it): the folder is incomplete`);
    const buf = fs.readFileSync(file);
    if (buf.length !== want.bytes) throw new Error(`${file}: ${buf.length} bytes, the manifest says ${want.bytes}: the file is truncated or was changed`);
    if (sha256(buf) !== want.sha256) throw new Error(`${file}: its SHA-256 differs from the manifest's: the file is damaged or was changed`);
  }
  return m;
}

/** The files of a folder as bytes (for copying it as a unit), manifest excluded. */
export function readFolderFiles(dir: string): Record<string, Buffer> {
  const m = verifyFolder(dir);
  const names = m ? Object.keys(m.files) : fs.readdirSync(dir).filter((n) => n !== MANIFEST && !isTempName(n) && fs.statSync(path.join(dir, n)).isFile());
  return Object.fromEntries(names.map((n) => [n, fs.readFileSync(path.join(dir, n))]));
}
