/**
 * Checkpoint folders (a model, an editor, a training run's `best` or `last`) written as one unit,
 * so that a folder is always either the old one or the new one, never a mix:
 *
 *   1. every file is written durably (durable.ts) into a temporary sibling folder, and
 *      `manifest.json` last: the folder's kind and every file with its size and SHA-256;
 *   2. the old folder (if any) is renamed aside (`.<name>.old.<pid>.<random>`), the new one renamed
 *      into place, the old one removed. A process killed between the two renames leaves no folder
 *      under the name and the complete old one aside: `recoverFolder` (run by every read and write)
 *      renames it back.
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

export const MANIFEST = "manifest.json";

export interface Manifest {
  format: "mend-ts-folder";
  /** What the folder holds: "model", "editor", "pretrain-run", "editor-run", ... */
  kind: string;
  files: Record<string, { bytes: number; sha256: string }>;
}

const sha256 = (b: Uint8Array) => crypto.createHash("sha256").update(b).digest("hex");

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
export function writeFolder(dir: string, kind: string, files: Readonly<Record<string, Uint8Array | string>>, opts: { check?: () => void } = {}): void {
  for (const name of Object.keys(files)) {
    if (name === MANIFEST || name.includes("/") || name.includes("\\") || isTempName(name)) throw new Error(`writeFolder: bad file name "${name}"`);
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
    if (aside) fs.renameSync(dir, aside);
    fs.renameSync(tmp, dir);
    fsyncDir(parent);
    if (aside) fs.rmSync(aside, { recursive: true, force: true });
  });
}

/** The folder's manifest, or null for a folder without one. */
export function readManifest(dir: string): Manifest | null {
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file)) return null;
  let m: Manifest;
  try {
    m = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (m?.format !== "mend-ts-folder" || typeof m.kind !== "string" || typeof m.files !== "object") throw new Error(`${file}: not a mend-ts folder manifest`);
  return m;
}

/**
 * Check a folder against its manifest (after recovering an interrupted write). Throws an error that
 * names the file that is missing or differs. @returns the manifest, or null without one
 */
export function verifyFolder(dir: string): Manifest | null {
  recoverFolder(dir);
  const m = readManifest(dir);
  if (!m) return null;
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
