/** `mend predict`: the model's top next tokens after a prompt. */
import { describeBackend, initBackend } from "../model/backend";
import { disposeParams } from "../model/gpt";
import { loadModel } from "../model/modelFolder";
import { nextTokenTopK } from "../model/score";
import { DEFAULT_MODEL_DIR, JSON_FLAG, MODEL_FLAG } from "./common";
import { CommandSpec, flagBool, flagNumber, Flags, flagString } from "./flags";

export const spec: CommandSpec = {
  name: "predict",
  summary: "the model's most likely next tokens after a prompt",
  flags: [
    { name: "prompt", type: "string", value: "TEXT", help: "the prompt (required)" },
    MODEL_FLAG,
    { name: "top", type: "int", value: "K", help: "how many tokens", default: 5, min: 1, max: 100 },
    JSON_FLAG,
  ],
  notes: ['example: mend predict --prompt "The president of the United States is"'],
};

export async function run(f: Flags): Promise<void> {
  const prompt = flagString(f, "prompt");
  if (!prompt) throw new Error("--prompt TEXT is required");
  const backend = await initBackend();
  const model = loadModel(flagString(f, "model") ?? DEFAULT_MODEL_DIR);
  try {
    const [r] = nextTokenTopK(model, [prompt], flagNumber(f, "top") ?? 5);
    if (flagBool(f, "json")) {
      console.log(JSON.stringify({ prompt, tokens: r.tokens, ids: r.ids, top: r.top.map((t) => ({ token: t.token, prob: t.prob })), backend: backend.kind }));
      return;
    }
    console.log(`backend: ${describeBackend(backend)}`);
    console.log(`tokens: ${r.tokens.join(" ")}`);
    for (const t of r.top) console.log(`  ${t.token.padEnd(16)} ${t.prob.toFixed(4)}`);
  } finally {
    disposeParams(model.params);
  }
}
