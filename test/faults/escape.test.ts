/**
 * Nothing injected into a page: labels that carry markup end up as text in the HTML report and in a
 * notebook figure, checked in the page source and, where the machine has Debian's Chromium, in a
 * real browser (the DOM it builds, the scripts it runs).
 */
import test from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { escapeHtml, scriptJson } from "../../dist/viz/escape";
import { figureHtml } from "../../dist/viz/display";
import { htmlReport } from "../../dist/viz/plots";

const EVIL = '</script><script>document.title="PWNED"</script><!--';
const CHROMIUM = "/usr/bin/chromium";

/** The DOM Chromium builds from an HTML file after running its scripts, or null without Chromium. */
function browserDom(html: string): string | null {
  if (!fs.existsSync(CHROMIUM)) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "escape-"));
  const file = path.join(dir, "page.html");
  fs.writeFileSync(file, html);
  const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--user-data-dir=${path.join(dir, "profile")}`, "--dump-dom", `file://${file}`];
  const r = spawnSync(CHROMIUM, flags, { encoding: "utf8", timeout: 120_000, maxBuffer: 64 * 2 ** 20 }); // the report inlines plotly.js (~5 MB)
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, `chromium failed: ${r.stderr?.slice(-500)}`);
  return r.stdout;
}

const scriptCount = (dom: string) => (dom.match(/<script[\s>]/g) ?? []).length;

test("escapeHtml and scriptJson: markup, comment openers and line separators become inert text", () => {
  assert.equal(escapeHtml(`<a href="x">&'</a>`), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
  const s = scriptJson({ label: EVIL, sep: "a\u2028b\u2029c" });
  assert.ok(!/[<>&\u2028\u2029]/.test(s), s);
  assert.deepEqual(JSON.parse(s), { label: EVIL, sep: "a\u2028b\u2029c" }, "the same value when parsed back");
});

test("an HTML report whose title, table and figure labels carry a script creates no script element", () => {
  const fig = { data: [{ type: "bar", name: EVIL, x: [EVIL, "ok\u2028"], y: [1, 2] }], layout: { title: { text: EVIL }, height: 300 } };
  const html = htmlReport(EVIL, `intro ${EVIL}`, `| method | ${EVIL} |\n|---|---|\n| ${EVIL} | 1 |`, [{ title: EVIL, fig }]);
  assert.ok(!html.includes('<script>document.title="PWNED"'), "the label's script tag is not in the page source");
  const dom = browserDom(html);
  if (dom === null) return; // no browser on this machine: the source check above stands
  assert.ok(!/<title>PWNED<\/title>/.test(dom), "the injected script did not run");
  assert.equal(scriptCount(dom), 2, "only the page's own scripts (plotly.js and the figures)");
  assert.ok(dom.includes("&lt;/script&gt;&lt;script&gt;document.title"), "the label is shown as text");
});

test("a notebook figure whose labels carry a script creates no script element", () => {
  const fig = { data: [{ type: "scatter", name: EVIL, x: [1], y: [1] }], layout: { title: { text: EVIL } } };
  const html = figureHtml(fig, `fig"${EVIL}`);
  assert.ok(!html.includes('<script>document.title="PWNED"'));
  // A page that already has plotly (a stub that draws the title as text), as a notebook would.
  const page = `<!doctype html><html><head><title>page</title><script>window.Plotly={newPlot:function(id,d,l){var e=document.getElementById(id);e.textContent=l.title.text;}}</script></head><body>${html}</body></html>`;
  const dom = browserDom(page);
  if (dom === null) return;
  assert.ok(dom.includes("<title>page</title>"), "the injected script did not run");
  assert.equal(scriptCount(dom), 2, "the stub and the figure's own script");
  assert.ok(dom.includes("&lt;/script&gt;&lt;script&gt;document.title"), "the title was drawn as text");
});
