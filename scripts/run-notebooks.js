#!/usr/bin/env node
// Runs scripts/run-notebooks.py with Debian's python3 (which has nbclient + ipykernel), with the
// tslab kernel registered privately for this checkout (scripts/kernel.js). Arguments are passed through.
const { spawnSync } = require("child_process");
const path = require("path");
const { root, python, privateKernelEnv, servePlotly } = require("./kernel");

const check = spawnSync(python, ["-c", "import nbclient, nbformat, ipykernel"], { stdio: "ignore" });
if (check.status !== 0) {
  console.error(`${python} lacks nbclient/ipykernel: install Jupyter (see README, "Notebooks") to run the notebooks`);
  process.exit(1);
}
servePlotly();
const run = spawnSync(python, [path.join(__dirname, "run-notebooks.py"), ...process.argv.slice(2)], { stdio: "inherit", cwd: root, env: privateKernelEnv() });
process.exit(run.status ?? 1);
