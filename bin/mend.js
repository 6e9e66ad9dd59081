#!/usr/bin/env node
// The `mend` command: see `mend help` or README.md.
process.setSourceMapsEnabled?.(true);
require("../dist/cli/main")
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
