#!/usr/bin/env node
// `npm run notebooks`: open notebooks/ in Jupyter Notebook with the tslab kernel registered for this
// checkout only (scripts/kernel.js): the machine's own kernel registrations are left as they are.
const { spawnSync } = require("child_process");
const fs = require("fs");
const path = require("path");
const { root, python, share, privateKernelEnv, servePlotly } = require("./kernel");

if (!fs.existsSync(path.join(root, "dist", "index.js"))) spawnSync("npm", ["run", "build"], { stdio: "inherit", cwd: root });
servePlotly();
const env = privateKernelEnv();
console.error(`tslab kernel registered in ${share}/kernels/tslab (for this checkout only; JUPYTER_PATH is set for this Jupyter)`);
const args = ["-m", "notebook", "--notebook-dir", path.join(root, "notebooks"), ...process.argv.slice(2)];
if (process.getuid?.() === 0) args.push("--allow-root");
const r = spawnSync(python, args, { stdio: "inherit", env });
process.exit(r.status ?? 0);
