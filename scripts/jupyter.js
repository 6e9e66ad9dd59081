#!/usr/bin/env node
// `npm run notebooks`: register the tslab kernel with Debian's Jupyter and open notebooks/.
const { spawnSync } = require("child_process");
const fs = require("fs");
const path = require("path");

const root = path.join(__dirname, "..");
const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const tslab = path.join(root, "node_modules", ".bin", "tslab");
if (!fs.existsSync(path.join(root, "dist", "index.js"))) spawnSync("npm", ["run", "build"], { stdio: "inherit", cwd: root });
const reg = spawnSync(tslab, ["install", "--python", python, "--binary", tslab], { stdio: "inherit" });
if (reg.status !== 0) process.exit(reg.status ?? 1);
const args = ["-m", "notebook", "--notebook-dir", path.join(root, "notebooks"), ...process.argv.slice(2)];
if (process.getuid?.() === 0) args.push("--allow-root");
const r = spawnSync(python, args, { stdio: "inherit" });
process.exit(r.status ?? 0);
