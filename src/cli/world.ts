/** `mend world`: write the generated corpus and edit records of the facts world. */
import { writeFolder } from "../model/checkpointFolder";
import { World } from "../world/world";
import { FORCE_FLAG, guardOutput, newRunDir } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";

export const spec: CommandSpec = {
  name: "world",
  summary: "write the facts world's corpus, splits and edit records",
  flags: [
    { name: "out", type: "string", value: "DIR", help: "output folder (data/generated is the shipped copy)", default: "a new runs/world-<time>" },
    FORCE_FLAG,
    { name: "seed", type: "int", value: "S", help: "seed of the splits and new targets", default: 0, min: 0 },
  ],
};

export async function run(f: Flags): Promise<void> {
  const out = flagString(f, "out") ?? newRunDir("world");
  guardOutput(out, "world-data", { force: flagBool(f, "force") });
  const seed = flagNumber(f, "seed") ?? 0;
  const world = World.load();
  const files: Record<string, string> = {
    "corpus.txt": world.corpus().map((c) => `${c.prompt} ${c.object}`).join("\n") + "\n",
    "splits.json": JSON.stringify(world.splits(seed), null, 1) + "\n",
  };
  for (const split of ["train", "val", "test"] as const) files[`edits.${split}.jsonl`] = world.editRecords(split, { seed }).map((r) => JSON.stringify(r)).join("\n") + "\n";
  writeFolder(out, "world-data", files);
  console.log(`wrote ${out}: corpus.txt (${world.corpus().length} sentences), splits.json, edits.{train,val,test}.jsonl`);
}
