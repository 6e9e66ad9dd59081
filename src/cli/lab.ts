/**
 * `mend lab` (`npm run lab`): build the MEND lab, a static web page that edits the shipped model in
 * the reader's browser (src/web), and serve it on localhost.
 *
 * The built folder (default site/) needs no server code and works from any static host:
 *   index.html, lab.css, lab.js      the page (src/web/page.ts, bundled by esbuild for browsers)
 *   wasm/                            tfjs' wasm binaries (plain, SIMD, threaded SIMD)
 *   checkpoints/base, checkpoints/editor   the shipped folders with their manifests (sizes, SHA-256)
 *   data/world.json, lab.json        the facts world; what the build computed (the cache's ε*)
 *   notebooks/                       the tutorial's HTML exports (docs/notebooks), read-only
 *   sizes.json                       the payload by part (docs/benchmarks.md)
 * Node's fs/path/os/... are mapped to src/web/shims (never called by the page), crypto to a SHA-256
 * on @noble/hashes. The folder is built beside the target and swapped in whole; a folder that is
 * not a built lab is replaced only with --force. The server sends the cross-origin-isolation headers
 * threaded wasm needs (COOP/COEP); without them (a plain static host) wasm runs on one thread.
 */
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { chooseCache } from "../baselines/cache";
import { initBackend } from "../model/backend";
import { loadModel } from "../model/modelFolder";
import { World } from "../world/world";
import { CommandSpec, flagBool, Flags, flagString } from "./flags";

export const ROOT = path.join(__dirname, "..", "..");
const MARK = "lab.json"; // what makes a folder a built lab

export const spec: CommandSpec = {
  name: "lab",
  summary: "build the MEND lab (edit the model in a web page) and serve it on localhost",
  flags: [
    { name: "out", type: "string", value: "DIR", help: "the folder to build into (any static host can serve it)", default: "site" },
    { name: "build-only", type: "boolean", help: "build, do not serve" },
    { name: "serve-only", type: "boolean", help: "serve the folder built before, do not build" },
    { name: "force", type: "boolean", help: "replace --out even when it is not a built lab" },
  ],
  notes: ["The port is PORT from the environment, else a free one; the URL is printed.", "Open the URL with ?prompt=...&target=...&method=MEND&backend=webgl to run that edit on load."],
};

export interface LabSizes {
  script: number;
  checkpoints: number;
  wasm: number;
  data: number;
}

/** Build the lab into `out` (replaced as a unit). Returns the payload's sizes in bytes. */
export async function buildLab(out: string, opts: { force?: boolean; log?: (s: string) => void } = {}): Promise<LabSizes> {
  const log = opts.log ?? (() => {});
  const target = path.resolve(out);
  if (fs.existsSync(target) && !fs.existsSync(path.join(target, MARK)) && !opts.force) {
    throw new Error(`${out} exists and is not a built lab (no ${MARK}): choose another --out, or pass --force to replace it`);
  }
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch {
    throw new Error('the lab is bundled with esbuild, a development dependency: run "npm install" in the project folder (not --omit=dev)');
  }
  const tmp = `${target}.building-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const shim = (f: string) => path.join(ROOT, "src", "web", "shims", f);
    const node = shim("node.ts");
    log("bundling src/web/page.ts");
    await esbuild.build({
      entryPoints: [path.join(ROOT, "src", "web", "page.ts")],
      bundle: true,
      minify: true,
      format: "iife",
      platform: "browser",
      target: ["es2020"],
      outfile: path.join(tmp, "lab.js"),
      alias: { fs: node, path: node, os: node, child_process: node, util: node, worker_threads: node, crypto: shim("crypto.ts") },
      external: ["@tensorflow/tfjs-node", "@tensorflow/tfjs-node-gpu"],
      define: { "process.env.NODE_ENV": '"production"', global: "globalThis" },
      logLevel: "error",
    });
    const copy = (from: string, to: string) => {
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(from, to);
    };
    for (const f of ["index.html", "lab.css"]) copy(path.join(ROOT, "web", f), path.join(tmp, f));
    const wasmDir = path.join(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json")), "dist");
    for (const f of fs.readdirSync(wasmDir).filter((n) => n.endsWith(".wasm"))) copy(path.join(wasmDir, f), path.join(tmp, "wasm", f));
    for (const dir of ["base", "editor"]) {
      const from = path.join(ROOT, "checkpoints", dir);
      for (const f of fs.readdirSync(from)) copy(path.join(from, f), path.join(tmp, "checkpoints", dir, f));
    }
    copy(path.join(ROOT, "data", "world.json"), path.join(tmp, "data", "world.json"));
    const exported = path.join(ROOT, "docs", "notebooks");
    for (const f of fs.readdirSync(exported)) copy(path.join(exported, f), path.join(tmp, "notebooks", f));
    log("choosing the cache's keying and threshold on the validation edits");
    await initBackend();
    const model = loadModel(path.join(ROOT, "checkpoints", "base"));
    let eps: ReturnType<typeof chooseCache>;
    try {
      eps = chooseCache(model, World.load(path.join(ROOT, "data", "world.json")).editRecords("val"));
    } finally {
      model.dispose();
    }
    const size = (p: string): number => (fs.statSync(p).isDirectory() ? fs.readdirSync(p).reduce((s, f) => s + size(path.join(p, f)), 0) : fs.statSync(p).size);
    const sizes: LabSizes = { script: size(path.join(tmp, "lab.js")), checkpoints: size(path.join(tmp, "checkpoints")), wasm: size(path.join(tmp, "wasm")), data: size(path.join(tmp, "data")) };
    fs.writeFileSync(path.join(tmp, "sizes.json"), JSON.stringify(sizes, null, 1) + "\n");
    fs.writeFileSync(path.join(tmp, MARK), JSON.stringify({ cacheThreshold: eps.threshold, cacheKeying: eps.keying, cacheValidation: { paraphraseHits: eps.paraphraseHits, localityMisses: eps.localityMisses } }, null, 1) + "\n");
    const old = `${target}.old-${process.pid}`;
    if (fs.existsSync(target)) fs.renameSync(target, old);
    fs.renameSync(tmp, target);
    fs.rmSync(old, { recursive: true, force: true });
    return sizes;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".css": "text/css", ".js": "text/javascript", ".json": "application/json", ".wasm": "application/wasm", ".png": "image/png" };

/** Serve a built lab folder on 127.0.0.1 (`port` 0: a free one), with COOP/COEP. */
export function serveLab(dir: string, port = 0): Promise<{ url: string; close: () => Promise<void> }> {
  const root = path.resolve(dir);
  if (!fs.existsSync(path.join(root, "index.html"))) throw new Error(`${dir} holds no built lab (index.html): run "npm run lab" (or mend lab --build-only) first`);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    let file = path.join(root, decodeURIComponent(url.pathname));
    if (file !== root && !file.startsWith(root + path.sep)) {
      res.writeHead(403).end("forbidden");
      return;
    }
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, "index.html");
    if (!fs.existsSync(file)) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end(`not found: ${url.pathname}`);
      return;
    }
    res.writeHead(200, {
      "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
      "Cache-Control": "no-cache",
    });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => reject(e.code === "EADDRINUSE" ? new Error(`port ${port} is in use: set PORT to another, or leave it unset for a free one`) : e));
    server.listen(port, "127.0.0.1", () => {
      const a = server.address() as { port: number };
      resolve({ url: `http://localhost:${a.port}/`, close: () => new Promise<void>((r) => server.close(() => r())) });
    });
  });
}

export async function run(f: Flags): Promise<void> {
  const out = flagString(f, "out") ?? "site";
  if (flagBool(f, "build-only") && flagBool(f, "serve-only")) throw new Error("--build-only and --serve-only exclude each other");
  if (!flagBool(f, "serve-only")) {
    const t0 = Date.now();
    const s = await buildLab(out, { force: flagBool(f, "force"), log: (m) => console.log(`lab: ${m}`) });
    const mb = (b: number) => `${(b / 1e6).toFixed(2)} MB`;
    console.log(`built ${out}/ in ${((Date.now() - t0) / 1000).toFixed(1)} s: script ${mb(s.script)}, checkpoints ${mb(s.checkpoints)}, wasm ${mb(s.wasm)}, data ${mb(s.data)}`);
  }
  if (flagBool(f, "build-only")) return;
  const raw = process.env.PORT;
  const port = raw === undefined || raw === "" ? 0 : Number(raw);
  if (!(Number.isInteger(port) && port >= 0 && port < 65536)) throw new Error(`PORT="${raw}" is not a port number`);
  const { url } = await serveLab(out, port);
  console.log(`the MEND lab: ${url}  (Ctrl-C stops it)`);
  await new Promise(() => {}); // serve until interrupted
}
