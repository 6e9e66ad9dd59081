import test from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { DEFAULT_PRETRAIN_CONFIG, pretrain } from "../dist/world/pretrain";
import { getWorld, setup } from "./helpers";

const cfg = { ...DEFAULT_PRETRAIN_CONFIG, maxSteps: 8, batchSize: 16, evalEvery: 4, warmupSteps: 2, model: { n_embd: 16, n_layer: 1, n_head: 2 } };

test("pretraining lowers the loss, is seeded, writes best/last and leaks nothing", async () => {
  await setup();
  const w = getWorld();
  const run = async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pt-"));
    const losses: number[] = [];
    await pretrain(w, dir, cfg, { onProgress: (p) => losses.push(p.loss) });
    return { dir, losses };
  };
  const before = tf.memory().numTensors;
  const a = await run();
  assert.equal(tf.memory().numTensors, before);
  assert.ok(a.losses[a.losses.length - 1] < a.losses[0], `loss went down: ${a.losses[0]} -> ${a.losses[a.losses.length - 1]}`);
  assert.ok(fs.existsSync(path.join(a.dir, "best", "model.safetensors")) && fs.existsSync(path.join(a.dir, "last", "optimizer.safetensors")));
  const b = await run();
  assert.deepEqual(b.losses, a.losses, "same seed, same losses");
});

test("pretraining resumes from the last checkpoint", async () => {
  await setup();
  const w = getWorld();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pt-"));
  await pretrain(w, dir, { ...cfg, maxSteps: 4 }, {});
  const steps: number[] = [];
  const r = await pretrain(w, dir, cfg, { resume: true, resumeWith: { maxSteps: 8 }, onProgress: (p) => steps.push(p.step) });
  assert.deepEqual(steps, [5, 6, 7, 8], "a larger step count given with resume applies");
  assert.equal(r.steps, 8);
  assert.equal(r.stepsRun, 4);
  await assert.rejects(pretrain(w, path.join(dir, "nothing-here"), cfg, { resume: true }), /nothing to resume: .*trainer_state\.json not found/);
});

test("pretraining rejects a model size it cannot build, before writing anything", async () => {
  await setup();
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pt-")), "run");
  await assert.rejects(pretrain(getWorld(), dir, { ...cfg, model: { n_embd: 18, n_head: 4 } }, {}), /n_embd \(18\) is not divisible by n_head \(4\)/);
  assert.equal(fs.existsSync(dir), false);
});
