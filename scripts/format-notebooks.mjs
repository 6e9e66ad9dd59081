#!/usr/bin/env node
// `npm run notebooks:format`: format every notebook's code cells with prettier (TypeScript,
// 100 columns), so cells read without horizontal scrolling, and clear their outputs and execution
// counts (notebooks are committed without outputs; the exports in docs/notebooks have them).
// Markdown cells are left alone.
import * as fs from "fs";
import * as path from "path";
import * as prettier from "prettier";

const dir = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "notebooks");
const options = { parser: "typescript", printWidth: 100, trailingComma: "all" };
let changed = 0;
for (const name of fs.readdirSync(dir).filter((n) => n.endsWith(".ipynb")).sort()) {
  const file = path.join(dir, name);
  const nb = JSON.parse(fs.readFileSync(file, "utf8"));
  for (const cell of nb.cells) {
    if (cell.cell_type !== "code") continue;
    cell.outputs = [];
    cell.execution_count = null;
    const src = cell.source.join("");
    const out = (await prettier.format(src, options)).replace(/\n$/, "");
    if (out !== src) {
      const lines = out.split("\n");
      cell.source = lines.map((l, i) => (i < lines.length - 1 ? l + "\n" : l));
      changed++;
    }
  }
  fs.writeFileSync(file, JSON.stringify(nb, null, 1) + "\n");
}
console.log(`formatted ${changed} code cells`);
