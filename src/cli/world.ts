/** `mend world`: write the generated corpus and edit records of the facts world. */
import * as fs from "fs";
import * as path from "path";
import { writeFileAtomic } from "../model/safetensors";
import { World } from "../world/world";
import { PACKAGE_ROOT } from "./common";
import { CommandSpec, flagNumber, Flags, flagString } from "./flags";

export const spec: CommandSpec = {
  name: "world",
  summary: "write the facts world's corpus, splits and edit records",
  flags: [
    { name: "out", type: "string", value: "DIR", help: "output folder", default: "data/generated" },
    { name: "seed", type: "int", value: "S", help: "seed of the splits and new targets", default: 0, min: 0 },
  ],
};

export async function run(f: Flags): Promise<void> {
  const out = flagString(f, "out") ?? path.join(PACKAGE_ROOT, "data", "generated");
  const seed = flagNumber(f, "seed") ?? 0;
  const world = World.load();
  fs.mkdirSync(out, { recursive: true });
  writeFileAtomic(path.join(out, "corpus.txt"), world.corpus().map((c) => `${c.prompt} ${c.object}`).join("\n") + "\n");
  writeFileAtomic(path.join(out, "splits.json"), JSON.stringify(world.splits(seed), null, 1) + "\n");
  for (const split of ["train", "val", "test"] as const) {
    const recs = world.editRecords(split, { seed });
    writeFileAtomic(path.join(out, `edits.${split}.jsonl`), recs.map((r) => JSON.stringify(r)).join("\n") + "\n");
  }
  console.log(`wrote ${out}: corpus.txt (${world.corpus().length} sentences), splits.json, edits.{train,val,test}.jsonl`);
}
