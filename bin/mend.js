#!/usr/bin/env node
// The `mend` command: see `mend help` or README.md.
const fs = require("fs");
const path = require("path");
const entry = path.join(__dirname, "..", "dist", "cli", "main.js");
if (!fs.existsSync(entry)) {
  console.error("mend: the library is not built (dist/ is missing): run `npm install` (or `npm run build`) in " + path.join(__dirname, ".."));
  process.exit(1);
}
process.setSourceMapsEnabled?.(true);
require(entry)
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
