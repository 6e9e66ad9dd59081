/** Output guards see through symbolic links; saving through a link writes where it points; the folder you are in is refused. */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { loadModel } from "../../dist/model/modelFolder";
import { assertFails, assertOk, mend, ROOT, tmp } from "./helpers";

const edit = ["edit", "--prompt", "The capital of Peru is", "--target", "Santiago", "--json"];

test("mend edit --save LINK writes the folder the link points to, and the link stays a link", () => {
  const dir = tmp("link");
  const target = path.join(dir, "target");
  fs.mkdirSync(target);
  const link = path.join(dir, "link");
  fs.symlinkSync(target, link);
  assertOk(mend([...edit, "--save", link]), "edit --save through a link");
  assert.ok(fs.lstatSync(link).isSymbolicLink(), "the link is still a link");
  assert.ok(fs.existsSync(path.join(target, "model.safetensors")), "the model is where the link points");
  loadModel(link).dispose();
  const dangling = path.join(dir, "dangling");
  fs.symlinkSync(path.join(dir, "nowhere"), dangling);
  assertFails(mend([...edit, "--save", dangling]), /is a link to .*nowhere, which does not exist/, "a dangling link");
});

test("a link to a shipped checkpoint or to the --model folder is seen as what it points to", () => {
  const dir = tmp("link-guard");
  const toShipped = path.join(dir, "to-base");
  fs.symlinkSync(path.join(ROOT, "checkpoints", "base"), toShipped);
  assertFails(mend([...edit, "--save", toShipped]), /shipped checkpoints/, "link to checkpoints/base");
  const model = path.join(dir, "model");
  fs.cpSync(path.join(ROOT, "checkpoints", "base"), model, { recursive: true });
  const toModel = path.join(dir, "to-model");
  fs.symlinkSync(model, toModel);
  assertFails(mend([...edit, "--model", model, "--save", toModel]), /a folder this command reads from/, "link to the --model folder");
});

test("--save . and --save of an ancestor of the working folder are refused, with nothing left behind", () => {
  const dir = tmp("cwd");
  const inner = path.join(dir, "work");
  fs.mkdirSync(inner);
  assertFails(mend([...edit, "--save", ".", "--force"], { cwd: inner }), /it is the folder you are in/, "--save .");
  assertFails(mend([...edit, "--save", dir, "--force"], { cwd: inner }), /it is the folder you are in, or one that holds it/, "--save of the parent");
  assert.deepEqual(fs.readdirSync(dir), ["work"]);
  assert.deepEqual(fs.readdirSync(inner), []);
});
