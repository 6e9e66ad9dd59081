/**
 * Reading a dataset file into edit records: `zsre:FILE` or `counterfact:FILE` (the form the CLI's
 * `--data` takes), the file's format checked record by record with errors that name the record and
 * the field, and the train/validation split used for meta-training.
 */
import { EditRecord } from "./editRecord";
import type { Skipped } from "./jsonRecords";
import { counterfactRecords } from "./counterfact";
import { zsreRecords } from "./zsre";
import { readJsonFile } from "../model/jsonFile";
import type { Tokenizer } from "../model/tokenizer";

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
  const data = readJsonFile(file);
  const { records, skipped } = kind === "zsre" ? zsreRecords(data, file) : counterfactRecords(data, file);
  if (records.length === 0) throw new Error(`${file}: no usable records (${skipped.length} skipped: ${skipped[0]?.reason})`);
  return { kind, file, records, skipped };
}

/**
 * Check that a dataset's records can be edited and scored with `tokenizer`: a dataset's text is
 * for a GPT-2 with its BPE (the facts world's word tokenizer knows only its world's words), and a
 * record holding a special token (e.g. "<|endoftext|>") is refused with the file and the record.
 */
export function checkRecordsTokenize(ds: Pick<Dataset, "kind" | "file" | "records">, tokenizer: Tokenizer): void {
  if (tokenizer.kind !== "bpe") throw new Error(`${ds.kind}:${ds.file} needs a GPT-2 with its BPE tokenizer (--model DIR: a Hugging Face GPT-2 folder, or one made by "mend random-gpt2"); this model's word tokenizer knows only the facts world's words`);
  for (const r of ds.records) {
    const texts = [...r.prompts, ...r.heldout_prompts, r.target_new, r.target_true, ...r.locality.flatMap((l) => [l.prompt, l.target])];
    try {
      for (const t of texts) tokenizer.encode(t);
    } catch (e) {
      throw new Error(`${ds.file}: record with case_id ${r.case_id}: ${(e as Error).message}`);
    }
  }
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
