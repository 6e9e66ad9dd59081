/** Checked access to the records of a dataset's JSON file: errors name the file, the record and the field. */

/** The records of a JSON list (with errors that say what the file holds instead). */
export function readJsonList(data: unknown, file: string): Record<string, unknown>[] {
  if (!Array.isArray(data)) throw new Error(`${file}: expected a JSON list of records, got ${data === null ? "null" : typeof data}`);
  if (data.length === 0) throw new Error(`${file}: the list of records is empty`);
  data.forEach((r, i) => {
    if (!r || typeof r !== "object" || Array.isArray(r)) throw new Error(`${file}: record ${i} is not an object`);
  });
  return data as Record<string, unknown>[];
}

type FieldType = "string" | "string[]" | "object";
type FieldValue<T extends FieldType> = T extends "string" ? string : T extends "string[]" ? string[] : Record<string, unknown>;

/** A required field of a record, of a type; `where` names the record ("file: record 3") for the error. */
export function field<T extends FieldType>(r: Record<string, unknown>, name: string, type: T, where: string): FieldValue<T> {
  const v = r[name];
  const ok = type === "string" ? typeof v === "string" && v.trim() !== "" : type === "string[]" ? Array.isArray(v) && v.every((x) => typeof x === "string") : !!v && typeof v === "object" && !Array.isArray(v);
  if (!ok) {
    const got = v === undefined ? "it is missing" : `got ${JSON.stringify(v)?.slice(0, 60)}`;
    throw new Error(`${where}: field "${name}" must be ${type === "string" ? "a non-empty string" : type === "string[]" ? "a list of strings" : "an object"} (${got})`);
  }
  return v as FieldValue<T>;
}

/** A record left out of a dataset, and why. */
export interface Skipped {
  index: number;
  reason: string;
}
