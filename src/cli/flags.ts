/**
 * Command-line flags, declared once per command in a table that both parses and validates the
 * input (node's `util.parseArgs`, strict: unknown flags, stray words and a flag without its value
 * are errors) and generates `mend <command> --help`. Every numeric flag has a type and a range, and
 * a bad value is reported with the flag's name.
 */
import { parseArgs } from "util";

export type FlagType = "string" | "boolean" | "int" | "number" | "ints" | "strings" | "repeat";

export interface FlagSpec {
  name: string;
  type: FlagType;
  /** Placeholder in the help ("DIR", "K"). */
  value?: string;
  help: string;
  /** Shown in the help; the command applies it. */
  default?: string | number | boolean;
  /** Inclusive bounds for numbers (each item of "ints"). */
  min?: number;
  max?: number;
  /** Exclusive lower bound (a number > this). */
  above?: number;
  choices?: readonly string[];
  /** Listed under "advanced" (research settings). */
  advanced?: boolean;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** Extra lines after the flags (examples, notes). */
  notes?: string[];
  flags: FlagSpec[];
}

export type FlagValue = string | boolean | number | number[] | string[];
export type Flags = Record<string, FlagValue | undefined>;

export class UsageError extends Error {}

function checkNumber(f: FlagSpec, raw: string, x: number): number {
  const where = `--${f.name}`;
  if (raw.trim() === "" || !Number.isFinite(x)) throw new UsageError(`${where} must be a number, got "${raw}"`);
  if (f.type === "int" || f.type === "ints") {
    if (!Number.isSafeInteger(x)) throw new UsageError(`${where} must be a whole number, got "${raw}"`);
  }
  if (f.min !== undefined && x < f.min) throw new UsageError(`${where} must be >= ${f.min}, got ${raw}`);
  if (f.max !== undefined && x > f.max) throw new UsageError(`${where} must be <= ${f.max}, got ${raw}`);
  if (f.above !== undefined && !(x > f.above)) throw new UsageError(`${where} must be > ${f.above}, got ${raw}`);
  return x;
}

/** Parse `argv` against the command's table. @returns flag name -> typed value (absent flags undefined) */
export function parseFlags(spec: CommandSpec, argv: readonly string[]): Flags {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = { help: { type: "boolean" } };
  for (const f of spec.flags) options[f.name] = { type: f.type === "boolean" ? "boolean" : "string", ...(f.type === "repeat" ? { multiple: true } : {}) };
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify an option argument starting with a dash.*$/, "");
    throw new UsageError(`${msg} (see: mend ${spec.name} --help)`);
  }
  if (parsed.positionals.length) throw new UsageError(`unexpected argument${parsed.positionals.length > 1 ? "s" : ""} ${parsed.positionals.map((p) => `"${p}"`).join(", ")}: every value follows its flag (see: mend ${spec.name} --help)`);
  const out: Flags = { help: parsed.values.help as boolean | undefined };
  for (const f of spec.flags) {
    const v = parsed.values[f.name];
    if (v === undefined) continue;
    if (f.type === "boolean") {
      out[f.name] = v as FlagValue;
      continue;
    }
    if (f.type === "repeat") {
      const items = (Array.isArray(v) ? v : [v]).map(String);
      if (items.some((s) => s.trim() === "")) throw new UsageError(`--${f.name} needs a value (an empty one was given)`);
      out[f.name] = items;
      continue;
    }
    const raw = Array.isArray(v) ? String(v[v.length - 1]) : String(v);
    if (f.type === "string") {
      if (raw.trim() === "") throw new UsageError(`--${f.name} needs a value`);
      if (f.choices && !f.choices.includes(raw)) throw new UsageError(`--${f.name} must be one of ${f.choices.join(", ")}, got "${raw}"`);
      out[f.name] = raw;
    } else if (f.type === "int" || f.type === "number") out[f.name] = checkNumber(f, raw, Number(raw));
    else if (f.type === "ints") {
      const items = raw.split(",").map((s) => s.trim());
      if (items.some((s) => s === "")) throw new UsageError(`--${f.name} takes a comma-separated list of whole numbers, got "${raw}"`);
      out[f.name] = items.map((s) => checkNumber(f, raw, Number(s)));
    } else if (f.type === "strings") {
      const items = raw.split(",").map((s) => s.trim());
      if (items.some((s) => s === "")) throw new UsageError(`--${f.name} takes a comma-separated list, got "${raw}"`);
      const bad = f.choices ? items.filter((s) => !f.choices!.includes(s)) : [];
      if (bad.length) throw new UsageError(`--${f.name}: unknown ${bad.map((b) => `"${b}"`).join(", ")}; choose from ${f.choices!.join(", ")}`);
      out[f.name] = items;
    }
  }
  return out;
}

function flagLine(f: FlagSpec): string {
  const head = `--${f.name}${f.type === "boolean" ? "" : ` ${f.value ?? (f.type === "int" || f.type === "number" ? "N" : "VALUE")}`}`;
  const range = f.choices && f.type !== "strings" ? ` (${f.choices.join(" | ")})` : "";
  const def = f.default !== undefined ? ` [default: ${f.default}]` : "";
  const text = `${f.help}${range}${def}`;
  return head.length < 26 ? `  ${head.padEnd(26)}${text}` : `  ${head}\n  ${"".padEnd(26)}${text}`;
}

/** `mend <command> --help`. */
export function formatHelp(spec: CommandSpec): string {
  const basic = spec.flags.filter((f) => !f.advanced);
  const advanced = spec.flags.filter((f) => f.advanced);
  const lines = [`mend ${spec.name}: ${spec.summary}`, "", "options:", ...basic.map(flagLine), `  ${"--help".padEnd(26)}this text`];
  if (advanced.length) lines.push("", "advanced (research settings; see docs/deviations.md):", ...advanced.map(flagLine));
  if (spec.notes?.length) lines.push("", ...spec.notes);
  return lines.join("\n");
}

/** Typed accessors for parsed flags. */
export const flagString = (f: Flags, k: string): string | undefined => f[k] as string | undefined;
export const flagNumber = (f: Flags, k: string): number | undefined => f[k] as number | undefined;
export const flagBool = (f: Flags, k: string): boolean => f[k] === true;
