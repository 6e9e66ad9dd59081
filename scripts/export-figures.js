#!/usr/bin/env node
// Render the README figures to PNG from an evaluation's results.json (written by `mend eval`; default
// docs/eval/results.json, the run the README reports):
// each figure is drawn by plotly.js in a page that headless Chromium screenshots.
// Needs Debian's chromium-headless-shell (or chromium): apt-get install -y chromium-headless-shell
// Usage: node scripts/export-figures.js [results.json] [out dir]
const { spawnSync } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const plots = require("../dist/viz/plots");

const root = path.join(__dirname, "..");
const resultsPath = process.argv[2] ?? path.join(root, "docs", "eval", "results.json");
const outDir = process.argv[3] ?? path.join(root, "docs", "figures");
const browser = ["/usr/bin/chromium-headless-shell", "/usr/bin/chromium"].find((p) => fs.existsSync(p));
if (!browser) {
  console.error("no headless Chromium: apt-get install -y chromium-headless-shell");
  process.exit(1);
}
const r = JSON.parse(fs.readFileSync(resultsPath, "utf8"));
const figures = {
  summary: plots.summaryFigure(r.methods),
  drift: plots.driftFigure(r.drift, "dProb"),
  "drift-kl": plots.driftFigure(r.drift, "kl"),
  batched: plots.batchedFigure(r.batched),
  sequential: plots.sequentialFigure(r.sequential),
  "heatmap-mend": plots.heatmapFigure(r.heatmap.MEND, "MEND"),
};
const bundle = fs.readFileSync(plots.plotlyBundlePath(), "utf8");
fs.mkdirSync(outDir, { recursive: true });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fig-"));
for (const [name, fig] of Object.entries(figures)) {
  const width = 900;
  const height = fig.layout.height ?? 450;
  const html = `<!doctype html><html><head><meta charset="utf-8"><script>${bundle}</script></head>
<body style="margin:0;background:white"><div id="f" style="width:${width}px;height:${height}px"></div>
<script>Plotly.newPlot("f", ${JSON.stringify(fig.data)}, ${JSON.stringify({ ...fig.layout, width, height })}, {staticPlot: true});</script></body></html>`;
  const page = path.join(tmp, `${name}.html`);
  fs.writeFileSync(page, html);
  const png = path.join(outDir, `${name}.png`);
  const res = spawnSync(browser, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", `--user-data-dir=${path.join(tmp, "profile")}`, `--window-size=${width},${height}`, "--virtual-time-budget=5000", `--screenshot=${png}`, `file://${page}`], { encoding: "utf8" });
  if (res.status !== 0 || !fs.existsSync(png)) {
    console.error(`failed to render ${name}: ${res.stderr}`);
    process.exit(1);
  }
  console.log(`wrote ${path.relative(root, png)}`);
}
