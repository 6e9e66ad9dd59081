import test from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { decodeSafetensors, encodeSafetensors, readSafetensors, writeSafetensors } from "../dist/model/safetensors";

const tensors = {
  "a.weight": { dtype: "F32" as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
  b: { dtype: "I32" as const, shape: [2], data: Int32Array.from([7, -8]) },
};

test("round trip keeps names, shapes, dtypes, data and metadata", () => {
  const buf = encodeSafetensors(tensors, { step: "3" });
  const { tensors: t, metadata } = decodeSafetensors(buf);
  assert.deepEqual(metadata, { step: "3" });
  assert.deepEqual(t["a.weight"].shape, [2, 3]);
  assert.deepEqual([...t["a.weight"].data], [1, 2, 3, 4, 5, 6]);
  assert.equal(t.b.dtype, "I32");
  assert.deepEqual([...t.b.data], [7, -8]);
  assert.equal((buf.readUInt32LE(0) + 8) % 8, 0, "data section is 8-byte aligned");
});

test("bad files raise errors that name the problem", () => {
  const good = encodeSafetensors(tensors);
  assert.throws(() => decodeSafetensors(Buffer.alloc(4), "f"), /too short/);
  assert.throws(() => decodeSafetensors(good.subarray(0, good.length - 4), "f"), /truncated/);
  const hl = Number(good.readBigUInt64LE(0));
  const badLen = Buffer.from(good);
  badLen.writeBigUInt64LE(BigInt(hl + 1000), 0);
  assert.throws(() => decodeSafetensors(badLen, "f"), /exceeds the file size/);
  const mk = (header: object, dataBytes = 24) => {
    const h = Buffer.from(JSON.stringify(header));
    const out = Buffer.alloc(8 + h.length + dataBytes);
    out.writeBigUInt64LE(BigInt(h.length), 0);
    h.copy(out, 8);
    return out;
  };
  assert.throws(() => decodeSafetensors(mk({ x: { dtype: "F64", shape: [2], data_offsets: [0, 16] } }), "f"), /dtype "F64"/);
  assert.throws(() => decodeSafetensors(mk({ x: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }), "f"), /needs 12 bytes/);
  assert.throws(() => decodeSafetensors(mk({ x: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, y: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }), "f"), /overlap/);
  const notJson = Buffer.alloc(12);
  notJson.writeBigUInt64LE(4n, 0);
  notJson.write("{{{{", 8);
  assert.throws(() => decodeSafetensors(notJson, "f"), /not valid JSON/);
});

test("writes are atomic: no temp files left, the old file survives a failed write", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "st-"));
  const file = path.join(dir, "m.safetensors");
  writeSafetensors(file, tensors);
  assert.deepEqual(fs.readdirSync(dir), ["m.safetensors"]);
  const bad = { x: { dtype: "F32" as const, shape: [3], data: Float32Array.from([1]) } };
  assert.throws(() => writeSafetensors(file, bad), /has 3 elements but data has 1/);
  assert.deepEqual([...readSafetensors(file).tensors["a.weight"].data], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(fs.readdirSync(dir), ["m.safetensors"]);
  assert.throws(() => readSafetensors(path.join(dir, "missing.safetensors")), /file not found/);
});

test("F16 and BF16 tensors (Hugging Face checkpoints) are widened to F32 on read; other dtypes are named", () => {
  const make = (dtype: string, bits: number[]) => {
    const data = Buffer.from(new Uint16Array(bits).buffer);
    const h = Buffer.from(JSON.stringify({ w: { dtype, shape: [bits.length], data_offsets: [0, data.length] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length), 0);
    return Buffer.concat([len, h, data]);
  };
  const f16 = decodeSafetensors(make("F16", [0x3e00, 0xc000, 0x3400, 0x7bff, 0x0001, 0x7c00]), "f").tensors.w;
  assert.equal(f16.dtype, "F32");
  assert.equal(f16.stored, "F16");
  assert.deepEqual(Array.from(f16.data), [1.5, -2, 0.25, 65504, 2 ** -24, Infinity]);
  const bf16 = decodeSafetensors(make("BF16", [0x3fc0, 0xc000, 0x3e80]), "f").tensors.w;
  assert.deepEqual(Array.from(bf16.data), [1.5, -2, 0.25]);
  assert.throws(() => decodeSafetensors(make("F64", [0, 0, 0, 0]), "f"), /dtype "F64"; supported: F32, F16, BF16 and I32/);
});
