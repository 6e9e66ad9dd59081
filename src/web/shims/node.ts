/**
 * What the browser lab's bundle gets for Node's `fs`, `path`, `os`, `child_process`, `util` and
 * `worker_threads` (scripts/build-lab.mjs maps them here): the library's file and process code is
 * imported by the modules the lab uses but never called by it; a call says so instead of failing
 * obscurely. `path.join`/`resolve` and `util.inspect.custom` work, for the few module-level uses.
 */
const unavailable = (what: string) => (): never => {
  throw new Error(`${what} is not available in the browser lab: files are fetched over HTTP there`);
};

export const existsSync = () => false;
export const readFileSync = unavailable("fs.readFileSync");
export const writeFileSync = unavailable("fs.writeFileSync");
export const statSync = unavailable("fs.statSync");
export const readdirSync = unavailable("fs.readdirSync");
export const mkdirSync = unavailable("fs.mkdirSync");
export const openSync = unavailable("fs.openSync");
export const constants = {};
export const closeSync = unavailable("fs.closeSync");
export const fstatSync = unavailable("fs.fstatSync");
export const fsyncSync = unavailable("fs.fsyncSync");
export const lstatSync = unavailable("fs.lstatSync");
export const readSync = unavailable("fs.readSync");
export const readlinkSync = unavailable("fs.readlinkSync");
export const realpathSync = unavailable("fs.realpathSync");
export const renameSync = unavailable("fs.renameSync");
export const rmSync = unavailable("fs.rmSync");
export const rmdirSync = unavailable("fs.rmdirSync");
export const unlinkSync = unavailable("fs.unlinkSync");
export const writeSync = unavailable("fs.writeSync");
export const join = (...parts: string[]) => parts.filter(Boolean).join("/").replace(/\/+/g, "/");
export const resolve = join;
export const dirname = (p: string) => p.replace(/\/[^/]*$/, "") || ".";
export const basename = (p: string) => p.replace(/^.*\//, "");
export const sep = "/";
export const delimiter = ":";
export const relative = (_from: string, to: string) => to;
export const isAbsolute = (p: string) => p.startsWith("/");
export const extname = (p: string) => /\.[^./]*$/.exec(p)?.[0] ?? "";
export const tmpdir = () => "/tmp";
export const cpus = () => [{}];
export const spawn = unavailable("child_process.spawn");
export const spawnSync = unavailable("child_process.spawnSync");
export const execSync = unavailable("child_process.execSync");
export const inspect = Object.assign(() => "", { custom: Symbol.for("nodejs.util.inspect.custom") });
export const isMainThread = true;
export default { closeSync, fstatSync, fsyncSync, lstatSync, readSync, readlinkSync, realpathSync, renameSync, rmSync, rmdirSync, unlinkSync, writeSync, existsSync, readFileSync, writeFileSync, statSync, readdirSync, mkdirSync, openSync, constants, join, resolve, dirname, basename, sep, delimiter, relative, isAbsolute, extname, tmpdir, cpus, spawn, spawnSync, execSync, inspect, isMainThread };
