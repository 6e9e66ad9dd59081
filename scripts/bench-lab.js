#!/usr/bin/env node
/**
 * The MEND lab's size and speed (docs/benchmarks.md, "The MEND lab"): builds the site, then, three
 * times in alternation, for each backend in headless Chromium (Debian's, via playwright-core) the
 * time from opening a link that edits Trump -> Biden to that edit's results on screen, and three
 * more MEND edits on the page: the edit on the method's own clock and the whole step (the edit and
 * every panel's scoring; on webgpu all its read-settling passes, src/web/settledReads.ts); beside
 * them the same in Node (wasm) from the same files. Writes docs/lab-bench.json (`--out FILE`) and prints a table.
 *
 *   npm run build && node scripts/bench-lab.js [--rounds 3] [--out docs/lab-bench.json]
 *
 * SwiftShader, which runs headless Chromium's WebGL and WebGPU here, is a CPU renderer, not a GPU:
 * its numbers say nothing of a real GPU's.
 */
const fs = require("fs");
const os = require("os");
const path = require("path");
const { execSync } = require("child_process");
const { chromium } = require("playwright-core");
const { buildLab, serveLab } = require("../dist/cli/lab");
const { initBackend, describeBackend, backendChoice } = require("../dist/model/backend");
const { labFromFiles } = require("../dist/web/lab");

const ROOT = path.join(__dirname, "..");
const arg = (name, d) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : d);
const rounds = Number(arg("rounds", "3"));
const out = path.resolve(ROOT, arg("out", path.join("docs", "lab-bench.json")));
const BIDEN = { prompt: "The president of the United States is", target: "Biden" };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The commit checked out now (the run's code: read at the start, before anything can change it). */
function commitNow() {
  try {
    return execSync("git rev-parse --short HEAD", { cwd: ROOT }).toString().trim();
  } catch {
    return "unknown"; // not a git checkout
  }
}

async function main() {
  const commit = commitNow();
  const site = fs.mkdtempSync(path.join(os.tmpdir(), "mend-lab-bench-"));
  const sizes = await buildLab(path.join(site, "lab"));
  const server = await serveLab(path.join(site, "lab"));
  await initBackend();
  const read = (d) => Object.fromEntries(fs.readdirSync(d).map((n) => [n, new Uint8Array(fs.readFileSync(path.join(d, n)))]));
  const cp = path.join(site, "lab", "checkpoints");
  const files = { base: read(path.join(cp, "base")), editor: read(path.join(cp, "editor")), world: JSON.parse(fs.readFileSync(path.join(site, "lab", "data", "world.json"), "utf8")), config: JSON.parse(fs.readFileSync(path.join(site, "lab", "lab.json"), "utf8")) };
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-unsafe-webgpu"] });
  const results = { node: { loadMs: [], editMs: [], stepMs: [] } };
  for (const b of ["wasm", "webgl", "webgpu"]) results[b] = { firstEditMs: [], editMs: [], stepMs: [], passes: [], refused: null };
  try {
    for (let r = 0; r < rounds; r++) {
      // Node, wasm: load from the same bytes, then the edit four times (the first is warm-up)
      const t0 = performance.now();
      const lab = labFromFiles(files.base, files.editor, files.world, files.config);
      results.node.loadMs.push(performance.now() - t0);
      for (let i = 0; i < 4; i++) {
        const v = await lab.edit(BIDEN, "MEND");
        if (i > 0) results.node.editMs.push(v.latencyMs);
        if (i > 0) results.node.stepMs.push(v.stepMs);
      }
      lab.dispose();
      for (const backend of ["wasm", "webgl", "webgpu"]) {
        const page = await browser.newPage();
        const start = performance.now();
        await page.goto(`${server.url}?${new URLSearchParams({ ...BIDEN, method: "MEND", backend })}`);
        await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.status), null, { timeout: 600000 });
        if ((await page.evaluate(() => document.body.dataset.status)) !== "ready") {
          results[backend].refused = await page.textContent("#error");
          await page.close();
          continue;
        }
        results[backend].firstEditMs.push(performance.now() - start);
        for (let i = 0; i < 3; i++) {
          await page.evaluate(() => (document.body.dataset.status = "editing"));
          await page.click("#edit");
          await page.waitForFunction(() => document.body.dataset.status === "ready", null, { timeout: 600000 });
          const v = await page.evaluate(() => ({ latencyMs: window.mendLastEdit.latencyMs, stepMs: window.mendLastEdit.stepMs, passes: window.mendLastEdit.passes }));
          results[backend].editMs.push(v.latencyMs);
          results[backend].stepMs.push(v.stepMs);
          results[backend].passes.push(v.passes);
        }
        await page.close();
      }
      console.log(`round ${r + 1} of ${rounds} done`);
    }
  } finally {
    await browser.close();
    await server.close();
    fs.rmSync(site, { recursive: true, force: true });
  }
  const summary = {
    command: `node scripts/bench-lab.js --rounds ${rounds}`,
    date: new Date().toISOString().slice(0, 10),
    commit,
    chromium: execSync("/usr/bin/chromium --version").toString().trim(),
    node: `${process.version}, ${describeBackend(backendChoice())}`,
    payloadBytes: sizes,
    results,
  };
  fs.writeFileSync(out, JSON.stringify(summary, null, 1) + "\n");
  const ms = (xs) => (xs.length ? `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})` : "-");
  console.log(`| where | load to the first edit's results, ms | MEND edit (method's clock), ms | edit + panels (wall), ms | passes |\n|---|---|---|---|---|`);
  console.log(`| Node, wasm (load from bytes) | ${ms(results.node.loadMs)} | ${ms(results.node.editMs)} | ${ms(results.node.stepMs)} | 1 |`);
  for (const b of ["wasm", "webgl", "webgpu"]) console.log(`| Chromium, ${b} | ${results[b].refused ? `refused: ${results[b].refused}` : ms(results[b].firstEditMs)} | ${ms(results[b].editMs)} | ${ms(results[b].stepMs)} | ${[...new Set(results[b].passes)].join(", ")} |`);
  console.log(`wrote ${path.relative(ROOT, out)}`);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
