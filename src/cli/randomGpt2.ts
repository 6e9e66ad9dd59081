/** `mend random-gpt2`: write a randomly initialised GPT-2 in the Hugging Face layout (no download). */
import { initBackend } from "../model/backend";
import { GPT2_SHAPES, Gpt2Shape, writeRandomGpt2 } from "../model/randomGpt2";
import { FORCE_FLAG, guardOutput, SEED_FLAG } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";

export const spec: CommandSpec = {
  name: "random-gpt2",
  summary: "write a random GPT-2 folder as the Hub has them (config.json, model.safetensors, GPT-2's tokenizer files)",
  flags: [
    { name: "out", type: "string", value: "DIR", help: "the new model folder (required)" },
    { name: "shape", type: "string", value: "NAME", help: "model shape", choices: Object.keys(GPT2_SHAPES), default: "tiny" },
    SEED_FLAG,
    { name: "dtype", type: "string", value: "T", help: "dtype of the weights in the file", choices: ["F32", "F16", "BF16"], default: "F32" },
    { name: "prefix", type: "boolean", help: 'name tensors as GPT2LMHeadModel saves them ("transformer.h.0...")' },
    FORCE_FLAG,
  ],
  notes: ["example: mend random-gpt2 --out runs/gpt2-tiny && mend predict --model runs/gpt2-tiny --prompt \"Hello\"", "The weights are random: the folder exercises the loader, the tokenizer and editing at a real shape, not a model's knowledge."],
};

export async function run(f: Flags): Promise<void> {
  const out = flagString(f, "out");
  if (!out) throw new Error("--out DIR is required");
  const force = flagBool(f, "force");
  guardOutput(out, "model", { force });
  const shape = (flagString(f, "shape") ?? "tiny") as Gpt2Shape;
  await initBackend();
  writeRandomGpt2(out, { shape, seed: flagNumber(f, "seed") ?? 0, dtype: (flagString(f, "dtype") ?? "F32") as "F32", prefix: flagBool(f, "prefix") }, { check: () => guardOutput(out, "model", { force }) });
  console.log(`wrote a random ${shape} GPT-2 to ${out}`);
}
