/**
 * The MEND lab in a real browser (Debian's headless Chromium, driven by playwright-core): the built
 * folder, served by a plain static server (Python's http.server) and by `mend lab`'s, loads with no
 * console error, edits Trump -> Biden through a link on wasm, webgl and webgpu with the answer
 * Node's wasm run gives, shows its paraphrase table, undoes a stream edit back to the base model's
 * answer (wasm, webgpu), and names an unknown word and a damaged checkpoint. On webgpu the page's steps settle their reads in passes (src/web/settledReads.ts).
 * Screenshots go to runs/lab-test/.
 *
 * Tolerance of the browser against Node: 1e-5 on every probability of the edited model's top five
 * (p ≈ 0.13 for Biden). The backends compute the same float32 arithmetic with other kernels (WebGL's
 * exp and its summation order in shaders; threaded wasm splits sums across threads), and the edit
 * carries the difference through the editor and a 6-weight update; measured here (2026-12-07) the
 * gaps were 4.5e-8 (wasm), 6.4e-7 (webgl, SwiftShader) and 5.8e-7 (webgpu, SwiftShader), so 1e-5
 * leaves a margin of 15 over the largest. The gaps are printed with each run.
 */
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawn } from "child_process";
import type { Browser, Page } from "playwright-core";
import { buildLab, serveLab } from "../dist/cli/lab";
import { initBackend } from "../dist/model/backend";
import { labFromFiles } from "../dist/web/lab";
import { ROOT } from "./helpers";

const CHROMIUM = "/usr/bin/chromium";
const skip = fs.existsSync(CHROMIUM) ? false : "Debian's Chromium is not installed (apt-get install chromium; .ci/run installs it)";
const TOLERANCE = 1e-5;
const BIDEN = { prompt: "The president of the United States is", target: "Biden" };
const shots = path.join(ROOT, "runs", "lab-test");

let browser: Browser;
let site: string;
let server: { url: string; close: () => Promise<void> };
let damaged: { url: string; close: () => Promise<void> };
/** The built folder behind Python's http.server: no COOP/COEP, nothing of ours. */
let plain: { url: string; close: () => Promise<void> };
let nodeAfter: { token: string; prob: number }[];

before(async () => {
  if (skip) return;
  site = fs.mkdtempSync(path.join(os.tmpdir(), "mend-lab-"));
  await buildLab(path.join(site, "ok"));
  server = await serveLab(path.join(site, "ok"));
  // a copy whose base model has one byte changed (its manifest still lists the old SHA-256)
  fs.cpSync(path.join(site, "ok"), path.join(site, "bad"), { recursive: true });
  const weights = path.join(site, "bad", "checkpoints", "base", "model.safetensors");
  const bytes = fs.readFileSync(weights);
  bytes[bytes.length - 5] ^= 0xff;
  fs.writeFileSync(weights, bytes);
  damaged = await serveLab(path.join(site, "bad"));
  plain = await plainStaticServer(path.join(site, "ok"));
  // the same edit in Node (wasm), from the same files
  await initBackend();
  const read = (d: string) => Object.fromEntries(fs.readdirSync(d).map((n) => [n, new Uint8Array(fs.readFileSync(path.join(d, n)))]));
  const cp = path.join(site, "ok", "checkpoints");
  const lab = labFromFiles(read(path.join(cp, "base")), read(path.join(cp, "editor")), JSON.parse(fs.readFileSync(path.join(site, "ok", "data", "world.json"), "utf8")), JSON.parse(fs.readFileSync(path.join(site, "ok", "lab.json"), "utf8")));
  nodeAfter = (await lab.edit(BIDEN, "MEND")).after;
  lab.dispose();
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-unsafe-webgpu"] });
  fs.mkdirSync(shots, { recursive: true });
});

after(async () => {
  if (skip) return;
  await browser?.close();
  await server?.close();
  await damaged?.close();
  await plain?.close();
  fs.rmSync(site, { recursive: true, force: true });
});

/** A page that records console errors and uncaught exceptions. */
async function open(url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors: string[] = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  return { page, errors };
}

const settled = (page: Page, states = ["ready", "error"]) => page.waitForFunction((s) => s.includes(document.body.dataset.status ?? ""), states, { timeout: 240_000 });
const link = (q: Record<string, string>, at = server) => `${at.url}?${new URLSearchParams(q)}`;

/** `python3 -m http.server` on a free port, serving `dir` as any static host would. */
function plainStaticServer(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const child = spawn("python3", ["-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "0"], { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.once("error", reject);
    child.stdout.on("data", (d: Buffer) => {
      const m = /port (\d+)/.exec((out += d.toString()));
      if (m) resolve({ url: `http://127.0.0.1:${m[1]}/`, close: async () => void child.kill() });
    });
  });
}

/** The "after" table's rows: token and probability. */
const afterRows = (page: Page) => page.$$eval("#after tbody tr", (rows) => (rows as HTMLTableRowElement[]).map((r) => ({ token: r.cells[0].textContent!, prob: Number(r.cells[1].textContent!.trim()) })));
/** The newest edit's top five after the edit, at full precision (the page keeps its last result). */
const afterExact = (page: Page) => page.evaluate(() => (window as unknown as { mendLastEdit: { after: { token: string; prob: number }[] } }).mendLastEdit.after);

for (const backend of ["wasm", "webgl", "webgpu"]) {
  test(`lab in Chromium, ${backend}, from a plain static server: a shared link edits Trump -> Biden as Node does, with its paraphrases`, { skip, timeout: 300_000 }, async (t) => {
    const { page, errors } = await open(link({ ...BIDEN, method: "MEND", backend }, plain));
    await settled(page);
    assert.equal(await page.evaluate(() => document.body.dataset.status), "ready", await page.textContent("#error") ?? "");
    const rows = await afterRows(page);
    assert.equal(rows[0].token, "Biden");
    assert.deepEqual(rows.map((r) => r.token), nodeAfter.map((r) => r.token), "the same five tokens as Node's wasm run");
    const exact = await afterExact(page);
    const gaps = exact.map((r, i) => Math.abs(r.prob - nodeAfter[i].prob));
    assert.ok(Math.max(...gaps) <= TOLERANCE, `top-5 probabilities differ from Node's by up to ${Math.max(...gaps)}`);
    const paraphrases = await page.$$eval("#probes tbody tr", (rs) => (rs as HTMLTableRowElement[]).filter((r) => r.cells[0].textContent === "paraphrase").length);
    assert.ok(paraphrases >= 3, `the paraphrase table has ${paraphrases} rows`);
    assert.match((await page.textContent("#status")) ?? "", new RegExp(`MEND on ${backend}`));
    const shot = path.join(shots, `lab-${backend}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${path.relative(ROOT, shot)}; largest gap to Node's top-5 probabilities: ${Math.max(...gaps).toExponential(2)}`);
    assert.deepEqual(errors, [], "no console error");
    await page.close();
  });
}

for (const backend of ["wasm", "webgpu"]) {
  test(`lab in Chromium, ${backend}: a stream edit, then undo, gives back the base model's answer`, { skip, timeout: 300_000 }, async () => {
    const { page, errors } = await open(link({ ...BIDEN, method: "MEND", mode: "stream", backend }));
    await settled(page);
    assert.equal((await afterRows(page))[0].token, "Biden", (await page.textContent("#error")) ?? "");
    assert.match((await page.textContent("#stream-summary")) ?? "", /^1 edit\(s\): retention 1\.000/);
    await page.click("#undo");
    await page.waitForFunction(() => document.getElementById("status")!.textContent!.startsWith("Undone"), null, { timeout: 240_000 });
    assert.equal((await afterRows(page))[0].token, "Trump");
    assert.match((await page.textContent("#stream-summary")) ?? "", /^0 edit\(s\)/);
    assert.equal(await page.isDisabled("#undo"), true);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test("lab in Chromium: usable at a phone's width (nothing wider than the screen but the tables' own scroll boxes)", { skip, timeout: 300_000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await page.goto(link({ ...BIDEN, method: "MEND", backend: "wasm" }));
  await settled(page);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a 390 px screen`);
  await page.screenshot({ path: path.join(shots, "lab-phone.png") });
  await page.close();
});

test("lab in Chromium: an unknown word is named, with a suggestion", { skip, timeout: 300_000 }, async () => {
  const { page } = await open(link({ prompt: "The presidnet of the United States is", target: "Biden", backend: "wasm" }));
  await settled(page);
  assert.equal(await page.evaluate(() => document.body.dataset.status), "error");
  assert.match((await page.textContent("#error")) ?? "", /unknown word "presidnet" \(did you mean "president"\?\)/);
  await page.close();
});

test("lab in Chromium: a damaged checkpoint is a message naming the file, not a blank page", { skip, timeout: 300_000 }, async () => {
  const { page } = await open(`${damaged.url}?backend=wasm`);
  await settled(page, ["loaded", "ready", "error"]);
  assert.equal(await page.evaluate(() => document.body.dataset.status), "error");
  assert.match((await page.textContent("#error")) ?? "", /checkpoints\/base\/model\.safetensors: its SHA-256 is .* the file is damaged or was changed/);
  await page.close();
});
