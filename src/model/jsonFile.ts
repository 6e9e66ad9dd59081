/**
 * Reading the JSON files users hand over (model and editor configs, request lists, datasets,
 * manifests): a UTF-8 byte-order mark is dropped (editors on Windows write one), and every error
 * names the file.
 */
import * as fs from "fs";

/** The parsed contents of a JSON file; errors name the file (missing, unreadable, not JSON). */
export function readJsonFile(file: string): unknown {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  if (fs.statSync(file).isDirectory()) throw new Error(`${file}: a folder, not a JSON file`);
  return parseJson(fs.readFileSync(file, "utf8"), file);
}

/** JSON text (a leading BOM dropped) parsed; errors name `where`. */
export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${(e as Error).message})`);
  }
}

/** Whether `v` is a JSON object (not null, not a list). */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

/** What a field of a JSON file must be: words for the message, and the test. */
export interface FieldRule {
  want: string;
  ok: (v: unknown) => boolean;
}

const rule = (want: string, ok: (v: unknown) => boolean): FieldRule => ({ want, ok });

/** The rules the files' readers use (`checkedFields`). */
export const field = {
  object: rule("an object", isJsonObject),
  list: rule("a list", Array.isArray),
  string: rule("a string", (v) => typeof v === "string"),
  strings: rule("a list of strings", (v) => Array.isArray(v) && v.every((s) => typeof s === "string")),
  number: rule("a finite number", (v) => typeof v === "number" && Number.isFinite(v)),
  positive: rule("a positive number", (v) => typeof v === "number" && Number.isFinite(v) && v > 0),
  // Safe integers only: 1e300 is an integer to JavaScript, and no count, id or size.
  integer: rule("an integer", (v) => Number.isSafeInteger(v)),
  count: rule("a non-negative integer", (v) => Number.isSafeInteger(v) && (v as number) >= 0),
  size: rule("a positive integer", (v) => Number.isSafeInteger(v) && (v as number) > 0),
  sha256: rule("a SHA-256 in hex (64 characters)", (v) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v)),
  /** `r`, or null (JSON writes ±Infinity and NaN as null). */
  orNull: (r: FieldRule) => rule(`${r.want} or null`, (v) => v === null || r.ok(v)),
  optional: (r: FieldRule) => rule(`${r.want} or absent`, (v) => v === undefined || r.ok(v)),
  oneOf: (...values: string[]) => rule(`one of ${values.map((x) => JSON.stringify(x)).join(", ")}`, (v) => values.includes(v as string)),
};

/** An error naming the file, the field, what it must be and what it is. */
export function fieldError(file: string, name: string, want: string, got: unknown): Error {
  return new Error(`${file}: ${name} must be ${want}, got ${JSON.stringify(got)?.slice(0, 80) ?? String(got)}`);
}

/**
 * `v` checked as an object whose fields follow `rules` (fields not named are left alone); `prefix`
 * names where `v` sits in the file ("base." …). Errors name the file and the field.
 */
export function checkedFields<T = Record<string, unknown>>(v: unknown, file: string, rules: Readonly<Record<string, FieldRule>>, prefix = ""): T {
  if (!isJsonObject(v)) throw fieldError(file, prefix ? prefix.replace(/\.$/, "") : "the file", "an object", v);
  for (const [name, r] of Object.entries(rules)) if (!r.ok(v[name])) throw fieldError(file, prefix + name, r.want, v[name]);
  return v as T;
}

/** `make()`, its errors prefixed with `file` (a config's values checked where they are used). */
export function inFile<T>(file: string, make: () => T): T {
  try {
    return make();
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}
