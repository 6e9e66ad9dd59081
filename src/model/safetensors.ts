/**
 * Reader and writer for the safetensors format (HF): 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}},
 * then the raw little-endian data. This project writes F32 and I32; reading also takes F16 and BF16
 * (the dtypes of Hugging Face GPT-2 checkpoints), widened to F32 on read (`stored` keeps the file's).
 *
 * Hand-written: there is no maintained JavaScript safetensors reader. Reading validates everything
 * as Hugging Face's loader does (offsets that fit, no overlaps, no gaps, no trailing bytes) and
 * names the problem; writing is durable (durable.ts).
 */
import * as fs from "fs";
import { writeFileDurable } from "./durable";

export type DType = "F32" | "I32";

/** Half-precision dtypes read (and widened to F32) but never written. */
export type HalfDType = "F16" | "BF16";
const BYTES: Record<string, number> = { F32: 4, I32: 4, F16: 2, BF16: 2 };

export interface RawTensor {
  dtype: DType;
  /** The dtype in the file when it was widened on read (F16, BF16). */
  stored?: HalfDType;
  shape: number[];
  data: Float32Array | Int32Array;
}

export class SafetensorsError extends Error {
  constructor(file: string, msg: string) {
    super(`${file}: ${msg}`);
    this.name = "SafetensorsError";
  }
}

/** Serialise tensors (sorted by name) and metadata to a safetensors buffer. */
export function encodeSafetensors(tensors: Record<string, RawTensor>, metadata: Record<string, string> = {}): Buffer {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const n of names) {
    const t = tensors[n];
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`tensor "${n}": shape [${t.shape}] has ${count} elements but data has ${t.data.length}`);
    header[n] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8); // align data to 8 bytes, as the reference writer does
  const headerBuf = Buffer.from(json, "utf8");
  const out = Buffer.alloc(8 + headerBuf.length + offset);
  out.writeBigUInt64LE(BigInt(headerBuf.length), 0);
  headerBuf.copy(out, 8);
  let pos = 8 + headerBuf.length;
  for (const n of names) {
    const d = tensors[n].data;
    Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, pos);
    pos += d.byteLength;
  }
  return out;
}

/** IEEE half (F16) or bfloat16 (BF16) bit patterns -> float32 values. */
function widen(bits: Uint16Array, dtype: HalfDType): Float32Array {
  const out = new Float32Array(bits.length);
  if (dtype === "BF16") {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16; // bfloat16 is the top half of a float32
    return out;
  }
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    out[i] = exp === 0 ? sign * 2 ** -14 * (frac / 1024) : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

/** One tensor's header entry: where its bytes are in the data section. */
export interface SafetensorsEntry {
  name: string;
  dtype: DType | HalfDType;
  shape: number[];
  /** Byte offsets in the data section, [begin, end). */
  begin: number;
  end: number;
}

/** Parse and validate a header (the JSON after the 8-byte length) for a data section of `dataLen` bytes. */
function parseHeader(json: string, dataLen: number, file: string): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(json);
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== "object" || Array.isArray(header)) throw new SafetensorsError(file, "header is not a JSON object");
  const meta = header.__metadata__ ?? {};
  if (typeof meta !== "object" || Array.isArray(meta) || !Object.values(meta).every((v) => typeof v === "string")) throw new SafetensorsError(file, `__metadata__ must map names to text, got ${JSON.stringify(meta)?.slice(0, 60)}`);
  const metadata = meta as Record<string, string>;
  const entries: SafetensorsEntry[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new SafetensorsError(file, `tensor "${name}" must be described by {"dtype", "shape", "data_offsets"}, got ${JSON.stringify(v)?.slice(0, 60)}`);
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e.dtype !== "string" || !Object.prototype.hasOwnProperty.call(BYTES, e.dtype)) throw new SafetensorsError(file, `tensor "${name}" has dtype ${JSON.stringify(e.dtype)}; supported: F32, F16, BF16 and I32`);
    const width = BYTES[e.dtype];
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new SafetensorsError(file, `tensor "${name}" has a bad shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[1] < off[0]) {
      throw new SafetensorsError(file, `tensor "${name}" has bad data_offsets ${JSON.stringify(off)}`);
    }
    const [b, en] = off as number[];
    const count = (e.shape as number[]).reduce((a, c) => a * c, 1);
    if (en - b !== count * width) throw new SafetensorsError(file, `tensor "${name}": shape [${e.shape}] needs ${count * width} bytes but data_offsets span ${en - b}`);
    if (en > dataLen) throw new SafetensorsError(file, `tensor "${name}" ends at byte ${en} but the data section has ${dataLen} bytes: file is truncated`);
    entries.push({ name, dtype: e.dtype as DType | HalfDType, shape: e.shape as number[], begin: b, end: en });
  }
  const spans = [...entries].sort((x, y) => x.begin - y.begin);
  let end = 0;
  for (const { begin: b, end: en, name } of spans) {
    if (b < end) throw new SafetensorsError(file, `tensor "${name}" overlaps the tensor before it (bytes ${b}-${en})`);
    if (b > end) throw new SafetensorsError(file, `a gap of ${b - end} bytes before tensor "${name}": the data section must be contiguous`);
    end = en;
  }
  if (end !== dataLen) throw new SafetensorsError(file, `${dataLen - end} trailing bytes after the last tensor: the file was changed or is not a safetensors file`);
  return { entries, metadata };
}

/** A tensor from its bytes (an aligned copy; half precision widened to F32). */
function tensorOf(e: SafetensorsEntry, bytes: Uint8Array): RawTensor {
  if (e.dtype === "F16" || e.dtype === "BF16") return { dtype: "F32", stored: e.dtype, shape: e.shape, data: widen(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2), e.dtype) };
  return { dtype: e.dtype, shape: e.shape, data: e.dtype === "F32" ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) : new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) };
}

/**
 * Parse and validate a safetensors buffer (a Node Buffer or any Uint8Array: the browser lab reads
 * fetched bytes). `file` is only used in error messages.
 */
export function decodeSafetensors(buf: Uint8Array, file = "safetensors"): { tensors: Record<string, RawTensor>; metadata: Record<string, string> } {
  if (buf.length < 8) throw new SafetensorsError(file, `file is ${buf.length} bytes, too short for a safetensors header`);
  const n = Number(new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true));
  if (n > buf.length - 8) throw new SafetensorsError(file, `header length ${n} exceeds the file size (${buf.length} bytes): truncated or not a safetensors file`);
  const dataStart = 8 + n;
  const { entries, metadata } = parseHeader(new TextDecoder().decode(buf.subarray(8, dataStart)), buf.length - dataStart, file);
  const tensors: Record<string, RawTensor> = {};
  for (const e of entries) tensors[e.name] = tensorOf(e, new Uint8Array(buf.subarray(dataStart + e.begin, dataStart + e.end))); // aligned copy
  return { tensors, metadata };
}

/**
 * A safetensors file opened for reading one tensor at a time (a GPT-2 checkpoint is loaded without
 * holding the whole file in memory). The header is validated on open; `close()` when done.
 */
export class SafetensorsFile {
  readonly entries: ReadonlyMap<string, SafetensorsEntry>;
  readonly metadata: Record<string, string>;
  private fd: number | null;
  private readonly dataStart: number;

  constructor(readonly file: string) {
    if (!fs.existsSync(file)) throw new SafetensorsError(file, "file not found");
    if (fs.statSync(file).isDirectory()) throw new SafetensorsError(file, "a folder, not a safetensors file");
    this.fd = fs.openSync(file, "r");
    try {
      const size = fs.fstatSync(this.fd).size;
      if (size < 8) throw new SafetensorsError(file, `file is ${size} bytes, too short for a safetensors header`);
      const len = Buffer.alloc(8);
      fs.readSync(this.fd, len, 0, 8, 0);
      const n = Number(len.readBigUInt64LE(0));
      if (n > size - 8) throw new SafetensorsError(file, `header length ${n} exceeds the file size (${size} bytes): truncated or not a safetensors file`);
      const json = Buffer.alloc(n);
      this.readFully(json, 8);
      this.dataStart = 8 + n;
      const { entries, metadata } = parseHeader(json.toString("utf8"), size - this.dataStart, file);
      this.entries = new Map(entries.map((e) => [e.name, e]));
      this.metadata = metadata;
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private readFully(buf: Uint8Array, position: number): void {
    for (let done = 0; done < buf.length; ) {
      const n = fs.readSync(this.fd!, buf, done, buf.length - done, position + done);
      if (n === 0) throw new SafetensorsError(this.file, "file ended early (changed while reading?)");
      done += n;
    }
  }

  /** Read one tensor (a fresh array the caller owns). */
  read(name: string): RawTensor {
    const e = this.entries.get(name);
    if (!e) throw new SafetensorsError(this.file, `no tensor "${name}"`);
    if (this.fd === null) throw new SafetensorsError(this.file, "file is closed");
    const bytes = new Uint8Array(e.end - e.begin);
    this.readFully(bytes, this.dataStart + e.begin);
    return tensorOf(e, bytes);
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** Read a whole file (every tensor in memory). For large checkpoints use `SafetensorsFile`. */
export function readSafetensors(file: string): { tensors: Record<string, RawTensor>; metadata: Record<string, string> } {
  const f = new SafetensorsFile(file);
  try {
    const tensors: Record<string, RawTensor> = {};
    for (const n of f.entries.keys()) tensors[n] = f.read(n);
    return { tensors, metadata: f.metadata };
  } finally {
    f.close();
  }
}

export function writeSafetensors(file: string, tensors: Record<string, RawTensor>, metadata: Record<string, string> = {}): void {
  writeFileDurable(file, encodeSafetensors(tensors, metadata));
}
