#!/usr/bin/env node
// Runs scripts/run-notebooks.py with Debian's python3 (which has nbclient + ipykernel), after
// making sure the tslab kernel is registered for it. Arguments are passed through.
const { spawnSync } = require("child_process");
const fs = require("fs");
const path = require("path");

const root = path.join(__dirname, "..");
const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const check = spawnSync(python, ["-c", "import nbclient, nbformat, ipykernel"], { stdio: "ignore" });
if (check.status !== 0) {
  console.error(`${python} lacks nbclient/ipykernel: install Jupyter (see README, "Notebooks") to run the notebooks`);
  process.exit(1);
}
const tslab = path.join(root, "node_modules", ".bin", "tslab");
const reg = spawnSync(tslab, ["install", "--python", python, "--binary", tslab], { stdio: "inherit" });
if (reg.status !== 0) process.exit(reg.status ?? 1);
const run = spawnSync(python, [path.join(__dirname, "run-notebooks.py"), ...process.argv.slice(2)], { stdio: "inherit", cwd: root });
process.exit(run.status ?? 1);
