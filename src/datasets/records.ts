/**
 * Reading a dataset file into edit records: `zsre:FILE` or `counterfact:FILE` (the form the CLI's
 * `--data` takes), the file's format checked record by record with errors that name the record and
 * the field, and the train/validation split used for meta-training.
 */
import * as fs from "fs";
import { EditRecord } from "./editRecord";
import type { Skipped } from "./jsonRecords";
import { counterfactRecords } from "./counterfact";
import { zsreRecords } from "./zsre";

export type DatasetKind = "zsre" | "counterfact";
export const DATASET_KINDS: readonly DatasetKind[] = ["zsre", "counterfact"];

export interface Dataset {
  kind: DatasetKind;
  file: string;
  records: EditRecord[];
  /** Records left out (e.g. zsRE records without an edit target). */
  skipped: Skipped[];
}

/** Parse `kind:FILE` (the --data flag). */
export function parseDataSpec(spec: string): { kind: DatasetKind; file: string } {
  const m = /^([a-z]+):(.+)$/.exec(spec);
  if (!m || !(DATASET_KINDS as readonly string[]).includes(m[1])) throw new Error(`--data ${JSON.stringify(spec)}: expected ${DATASET_KINDS.map((k) => `${k}:FILE`).join(" or ")}`);
  return { kind: m[1] as DatasetKind, file: m[2] };
}

/** Load a dataset file of a kind (zsRE: EasyEdit JSON; CounterFact: ROME's or EasyEdit's JSON). */
export function loadDataset(kind: DatasetKind, file: string): Dataset {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  let data: unknown;
  try {
    data = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const { records, skipped } = kind === "zsre" ? zsreRecords(data, file) : counterfactRecords(data, file);
  if (records.length === 0) throw new Error(`${file}: no usable records (${skipped.length} skipped: ${skipped[0]?.reason})`);
  return { kind, file, records, skipped };
}

/**
 * Meta-training split of a dataset's records: the last `valSize` (at most a tenth, at least one)
 * validate, the rest train; deterministic, in file order.
 */
export function splitRecords(records: readonly EditRecord[], valSize: number): { train: EditRecord[]; val: EditRecord[] } {
  if (records.length < 2) throw new Error(`a dataset needs at least 2 records to train an editor (training and validation), got ${records.length}`);
  const n = Math.max(1, Math.min(valSize, Math.floor(records.length / 10)));
  const tag = (rs: readonly EditRecord[], split: EditRecord["split"]) => rs.map((r) => ({ ...r, split }));
  return { train: tag(records.slice(0, records.length - n), "train"), val: tag(records.slice(records.length - n), "val") };
}
