/** Sharded Hub checkpoints (model.safetensors.index.json + shards) load one tensor at a time, equal to the unsharded folder. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { loadModel } from "../../dist/model/modelFolder";
import { writeRandomGpt2 } from "../../dist/model/randomGpt2";
import { encodeSafetensors, readSafetensors } from "../../dist/model/safetensors";
import { maxAbsDiff, setup } from "../helpers";
import { tmp } from "./helpers";

/** The folder `src` split into two shards with an index, as the Hub ships larger models. */
function shard(src: string, dst: string, index?: (map: Record<string, string>) => Record<string, unknown>): void {
  fs.mkdirSync(dst);
  for (const f of fs.readdirSync(src)) if (f !== "model.safetensors" && f !== "manifest.json") fs.copyFileSync(path.join(src, f), path.join(dst, f));
  const { tensors } = readSafetensors(path.join(src, "model.safetensors"));
  const names = Object.keys(tensors);
  const files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
  const half = Math.ceil(names.length / 2);
  const weightMap: Record<string, string> = {};
  files.forEach((f, k) => {
    const part = names.slice(k * half, (k + 1) * half);
    fs.writeFileSync(path.join(dst, f), encodeSafetensors(Object.fromEntries(part.map((n) => [n, tensors[n]]))));
    for (const n of part) weightMap[n] = f;
  });
  fs.writeFileSync(path.join(dst, "model.safetensors.index.json"), JSON.stringify(index ? index(weightMap) : { metadata: { total_size: 0 }, weight_map: weightMap }));
}

test("a sharded GPT-2 folder loads, tensor for tensor equal to the single-file one; bad indexes are named", async () => {
  await setup();
  const dir = tmp("shards");
  const one = path.join(dir, "one");
  writeRandomGpt2(one, { seed: 3, prefix: true });
  const two = path.join(dir, "two");
  shard(one, two);
  const [a, b] = [loadModel(one), loadModel(two)];
  assert.deepEqual(Object.keys(b.params).sort(), Object.keys(a.params).sort());
  for (const n of Object.keys(a.params)) assert.equal(maxAbsDiff(a.params[n], b.params[n]), 0, n);
  a.dispose();
  b.dispose();
  shard(one, path.join(dir, "outside"), (map) => ({ weight_map: { ...map, [Object.keys(map)[0]]: "../one/model.safetensors" } }));
  assert.throws(() => loadModel(path.join(dir, "outside")), /is mapped to "\.\.\/one\/model\.safetensors", not a file name of this folder/);
  shard(one, path.join(dir, "wrong"), (map) => ({ weight_map: { ...map, [Object.keys(map)[0]]: "model-00002-of-00002.safetensors" } }));
  assert.throws(() => loadModel(path.join(dir, "wrong")), /model-00002-of-00002\.safetensors: no tensor ".*" \(the index maps it there\)/);
  shard(one, path.join(dir, "noindex"), () => ({ metadata: {} }));
  assert.throws(() => loadModel(path.join(dir, "noindex")), /no "weight_map" object/);
});
