/**
 * The `mend` command line: one module per command (src/cli/<command>.ts), each with its flag table
 * (flags.ts) that validates the input and generates `mend <command> --help`. Every command picks the
 * backend first (MEND_BACKEND overrides) and prints human-readable output, or one JSON object with --json.
 */
import { watchParent } from "./parentWatch";
import { CommandSpec, formatHelp, Flags, parseFlags, UsageError } from "./flags";

interface Command {
  spec: CommandSpec;
  run(f: Flags, argv: readonly string[]): Promise<void>;
}

/** Commands load lazily, so `mend predict` does not load the evaluation code. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  predict: async () => import("./predict"),
  edit: async () => import("./edit"),
  eval: async () => import("./eval"),
  demo: async () => import("./demo"),
  pretrain: async () => import("./pretrain"),
  "train-editor": async () => import("./trainEditor"),
  world: async () => import("./world"),
  "random-gpt2": async () => import("./randomGpt2"),
  bench: async () => import("./bench"),
  paper: async () => import("./paper"),
  lifelong: async () => import("./lifelong"),
  ledger: async () => import("./ledger"),
  lab: async () => import("./lab"),
};

async function usage(): Promise<string> {
  const lines = ["mend: MEND (Model Editor Networks with Gradient Decomposition) on TensorFlow.js", "", "commands:"];
  for (const [name, load] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(14)}${(await load()).spec.summary}`);
  lines.push("", "mend <command> --help lists a command's options.", "Backend: tfjs-node-gpu, tfjs-node, wasm, cpu (the first that loads); MEND_BACKEND=node-gpu|node|wasm|cpu forces one.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  watchParent(); // a child of another mend process stops when that process is gone
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    if (cmd === "help" && rest[0] && COMMANDS[rest[0]]) {
      console.log(formatHelp((await COMMANDS[rest[0]]()).spec));
      return 0;
    }
    console.log(await usage());
    return cmd ? 0 : 1;
  }
  const load = COMMANDS[cmd];
  if (!load) {
    console.error(`mend: unknown command "${cmd}"\n\n${await usage()}`);
    return 2;
  }
  const command = await load();
  try {
    const flags = parseFlags(command.spec, rest);
    if (flags.help) {
      console.log(formatHelp(command.spec));
      return 0;
    }
    await command.run(flags, rest);
    return 0;
  } catch (e) {
    console.error(`mend ${cmd}: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.MEND_DEBUG && e instanceof Error) console.error(e.stack);
    return e instanceof UsageError ? 2 : 1;
  }
}
