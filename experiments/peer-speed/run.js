/**
 * mend-ts against an independent PyTorch MEND on the same machine, alternating: `pairs` rounds of
 * (the peer's bench.py, then `mend bench --json`), each in a fresh process, on the facts-world model's
 * shape (vocab 767, 4 x 128, editor rank 320, forward on 64 x 14 tokens). Prints each pair's ratios
 * and their ranges; appends every raw result to results.jsonl beside this file.
 *
 *   npm run build && node experiments/peer-speed/run.js --peer PATH/TO/PEER [--pairs 3] [--threads 1]
 *
 * PATH/TO/PEER holds the peer's bench.py (run with Debian's /usr/bin/python3 and its PyTorch, at
 * the peer's default of 2 threads). --threads sets MEND_WASM_THREADS for mend-ts. The repository does
 * not ship the peer; nothing else in the project runs this script.
 */
const fs = require("fs");
const path = require("path");
const { execFileSync, execSync } = require("child_process");

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : dflt);
const peer = opt("peer");
if (!peer || !fs.existsSync(path.join(peer, "bench.py"))) {
  console.error("usage: node experiments/peer-speed/run.js --peer DIR (a folder with the peer's bench.py)");
  process.exit(2);
}
const pairs = Number(opt("pairs", "3"));
const threads = opt("threads", "1");
const ROOT = path.join(__dirname, "..", "..");
const PEER_ARGS = ["bench.py", "--vocab", "767", "--n-positions", "32", "--n-embd", "128", "--n-layer", "4", "--n-head", "4", "--rank", "320", "--n-loc", "3", "--repeats", "20", "--fwd-batch", "64", "--fwd-len", "14"];
const commit = execSync("git rev-parse --short HEAD", { cwd: ROOT, encoding: "utf8" }).trim();
const dirty = execSync("git status --porcelain --untracked-files=no", { cwd: ROOT, encoding: "utf8" }).trim() !== "";

/** The JSON object a bench printed last: one line (the peer) or pretty-printed (mend bench --json). */
const lastJsonLine = (s) => {
  const lines = s.trim().split("\n");
  for (let i = lines.length - 1; i >= 0; i--) if (lines[i].startsWith("{")) return JSON.parse(lines.slice(i).join("\n"));
  throw new Error(`no JSON in: ${s.slice(0, 200)}`);
};
const ratios = [];
for (let p = 0; p < pairs; p++) {
  const theirs = lastJsonLine(execFileSync("/usr/bin/python3", PEER_ARGS, { cwd: peer, encoding: "utf8", maxBuffer: 1 << 26 }));
  const ours = lastJsonLine(execFileSync(process.execPath, [path.join(ROOT, "bin", "mend.js"), "bench", "--json", "--reps", "20"], { cwd: ROOT, encoding: "utf8", env: { ...process.env, MEND_WASM_THREADS: threads }, maxBuffer: 1 << 26 }));
  const row = {
    forward: [ours.base.forward.ms, theirs.base_fwd_ms],
    forward_backward: [ours.base.forwardBackward.ms, theirs.base_fwd_bwd_ms],
    edit: [ours.mend.edit.ms, theirs.mend_edit_ms],
    meta_step_per_example: [1000 / ours.mend.trainStep.examplesPerSec, theirs.mend_train_step_ms],
    peak_rss_mb: [ours.peakRssMb, theirs.peak_rss_mb],
  };
  ratios.push(row);
  fs.appendFileSync(path.join(__dirname, "results.jsonl"), JSON.stringify({ date: new Date().toISOString(), commit, dirty, threads: Number(threads), pair: p + 1, ours, peer: theirs }) + "\n");
  console.log(`pair ${p + 1}: ` + Object.entries(row).map(([k, [a, b]]) => `${k} ${a.toFixed(1)} vs ${b.toFixed(1)} (${(a / b).toFixed(2)}x)`).join(", "));
}
for (const k of Object.keys(ratios[0])) {
  const r = ratios.map((x) => x[k][0] / x[k][1]);
  const a = ratios.map((x) => x[k][0]);
  const b = ratios.map((x) => x[k][1]);
  const rng = (xs, d = 1) => `${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)}`;
  console.log(`${k.padEnd(17)} mend-ts ${rng(a)}  peer ${rng(b)}  ratio ${rng(r, 2)}x`);
}
