import test from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { FileOps, NODE_FILE_OPS, removeStaleTemps, writeFileDurable, WriteError } from "../dist/model/durable";
import { readFolderFiles, recoverFolder, verifyFolder, withFolderLock, writeFolder } from "../dist/model/checkpointFolder";
import { ROOT } from "./helpers";

const tmp = (p: string) => fs.mkdtempSync(path.join(os.tmpdir(), p));
const leftovers = (dir: string) => fs.readdirSync(dir).filter((n) => n.endsWith(".tmp"));

test("durable writes continue short writes and leave the whole file", () => {
  const dir = tmp("durable-");
  const file = path.join(dir, "x.bin");
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
  let calls = 0;
  const short: FileOps = { ...NODE_FILE_OPS, writeSync: (fd, buf, off, len) => (calls++, NODE_FILE_OPS.writeSync(fd, buf, off, Math.min(len, 7))) };
  writeFileDurable(file, data, short);
  assert.ok(calls >= 1000 / 7, `${calls} short writes`);
  assert.deepEqual(fs.readFileSync(file), data);
  assert.deepEqual(leftovers(dir), []);
});

test("a failed write (ENOSPC, a write of 0 bytes) names the path and cause, keeps the old file and leaves no temp file", () => {
  const dir = tmp("durable-");
  const file = path.join(dir, "model.safetensors");
  fs.writeFileSync(file, "the good old file");
  let n = 0;
  const full: FileOps = {
    ...NODE_FILE_OPS,
    writeSync: (fd, buf, off, len) => {
      if (++n === 3) throw Object.assign(new Error("no space left on device, write"), { code: "ENOSPC" });
      return NODE_FILE_OPS.writeSync(fd, buf, off, Math.min(len, 10));
    },
  };
  assert.throws(() => writeFileDurable(file, Buffer.alloc(100, 1), full), (e: unknown) => e instanceof WriteError && e.code === "ENOSPC" && e.message.includes(file) && /ENOSPC/.test(e.message));
  assert.equal(fs.readFileSync(file, "utf8"), "the good old file");
  assert.deepEqual(leftovers(dir), []);
  const stuck: FileOps = { ...NODE_FILE_OPS, writeSync: () => 0 };
  assert.throws(() => writeFileDurable(file, "new", stuck), /could not write .*model\.safetensors: EIO \(wrote 0 of 3 remaining bytes\)/);
  assert.equal(fs.readFileSync(file, "utf8"), "the good old file");
  const denied: FileOps = { ...NODE_FILE_OPS, openSync: () => { throw Object.assign(new Error("permission denied"), { code: "EACCES" }); } };
  assert.throws(() => writeFileDurable(file, "new", denied), /could not write .*: EACCES \(permission denied\)/);
  assert.deepEqual(leftovers(dir), []);
});

test("stale temp files of dead processes are removed; a live writer's are kept", () => {
  const dir = tmp("durable-");
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout;
  fs.writeFileSync(path.join(dir, `.model.safetensors.${dead}.0123abcd.tmp`), "half");
  fs.writeFileSync(path.join(dir, `.model.safetensors.${process.pid}.0123abcd.tmp`), "in progress");
  fs.writeFileSync(path.join(dir, "model.safetensors"), "real");
  assert.deepEqual(removeStaleTemps(dir), [`.model.safetensors.${dead}.0123abcd.tmp`]);
  assert.deepEqual(fs.readdirSync(dir).sort(), [`.model.safetensors.${process.pid}.0123abcd.tmp`, "model.safetensors"]);
});

test("a folder is written as one unit with a manifest; a changed, truncated or missing file is named on load", () => {
  const dir = path.join(tmp("folder-"), "editor");
  writeFolder(dir, "editor", { "a.json": "{}\n", "b.bin": Buffer.alloc(64, 7) });
  assert.equal(verifyFolder(dir)!.kind, "editor");
  assert.deepEqual(Object.keys(readFolderFiles(dir)).sort(), ["a.json", "b.bin"]);
  writeFolder(dir, "editor", { "a.json": "{\"v\": 2}\n", "c.bin": Buffer.alloc(8, 1) }); // replaced as a unit: b.bin is gone
  assert.deepEqual(fs.readdirSync(dir).sort(), ["a.json", "c.bin", "manifest.json"]);
  fs.writeFileSync(path.join(dir, "c.bin"), Buffer.alloc(4, 1));
  assert.throws(() => verifyFolder(dir), /c\.bin: 4 bytes, the manifest says 8/);
  fs.writeFileSync(path.join(dir, "c.bin"), Buffer.alloc(8, 2));
  assert.throws(() => verifyFolder(dir), /c\.bin: its SHA-256 differs/);
  fs.rmSync(path.join(dir, "c.bin"));
  assert.throws(() => verifyFolder(dir), /c\.bin: missing/);
});

test("a writer killed between the two renames of a folder swap: the old folder is put back", () => {
  const parent = tmp("folder-");
  const dir = path.join(parent, "model");
  writeFolder(dir, "model", { "x.txt": "old" });
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout;
  fs.renameSync(dir, path.join(parent, `.model.old.${dead}.89abcdef`)); // what a kill after the first rename leaves
  recoverFolder(dir);
  assert.equal(fs.readFileSync(path.join(dir, "x.txt"), "utf8"), "old");
  assert.deepEqual(fs.readdirSync(parent), ["model"]);
});

test("a second concurrent writer of one folder fails clearly; a stale lock is taken over", () => {
  const parent = tmp("folder-");
  const dir = path.join(parent, "out");
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 20000)"]);
  try {
    fs.writeFileSync(path.join(parent, ".out.lock"), String(child.pid));
    assert.throws(() => writeFolder(dir, "model", { "x.txt": "mine" }), new RegExp(`being written by another mend process \\(pid ${child.pid}\\)`));
    assert.ok(!fs.existsSync(dir));
  } finally {
    child.kill("SIGKILL");
  }
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout;
  fs.writeFileSync(path.join(parent, ".out.lock"), dead);
  writeFolder(dir, "model", { "x.txt": "mine" });
  assert.equal(fs.readFileSync(path.join(dir, "x.txt"), "utf8"), "mine");
  assert.ok(!fs.existsSync(path.join(parent, ".out.lock")), "the lock is released");
  assert.equal(withFolderLock(dir, () => 42), 42);
});

test("killed at random moments while rewriting a checkpoint folder, the folder is always one complete version", async () => {
  const parent = tmp("kill-");
  const dir = path.join(parent, "run");
  const writer = `
    const { writeFolder } = require(${JSON.stringify(path.join(ROOT, "dist", "model", "checkpointFolder"))});
    for (let i = 1; ; i++) {
      writeFolder(${JSON.stringify(dir)}, "pretrain-run", { "step.txt": String(i), "weights.bin": Buffer.alloc(1 << 20, i % 256), "state.json": JSON.stringify({ step: i }) });
      if (i === 1) process.stdout.write("written");
    }`;
  let versions = 0;
  for (let trial = 0; trial < 8; trial++) {
    const child = spawn(process.execPath, ["-e", writer], { stdio: ["ignore", "pipe", "ignore"] });
    // The kill lands at a varied moment after this child's first complete write, however loaded the machine is.
    const first = await new Promise<boolean>((r) => {
      child.stdout!.once("data", () => r(true));
      child.once("exit", () => r(false));
    });
    assert.ok(first, "the writer wrote its first version");
    await new Promise((r) => setTimeout(r, 5 + 13 * trial));
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
    if (!fs.existsSync(dir) && !fs.readdirSync(parent).some((n) => n.startsWith(".run.old."))) continue; // killed before the first version
    verifyFolder(dir); // recovers an interrupted swap, then checks every file
    const step = Number(fs.readFileSync(path.join(dir, "step.txt"), "utf8"));
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")).step, step, "trainer state and step of one version");
    assert.equal(fs.readFileSync(path.join(dir, "weights.bin"))[12345], step % 256, "weights of the same version");
    versions++;
  }
  assert.ok(versions > 0, "some trials got past the first write");
  recoverFolder(dir);
  assert.deepEqual(fs.readdirSync(parent), ["run"], "no temp or aside folder is left once recovered");
});
