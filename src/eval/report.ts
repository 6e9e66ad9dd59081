/**
 * Before/after reports of an edit: the top next-token prediction and its probability for the edit
 * prompt, the world's paraphrases of the same fact, locality probes of each class, and extra probes.
 * Used by `mend edit`, `npm start` and the notebooks.
 */
import type { LanguageModel } from "../model/languageModel";
import { nextTokenTopK, scoreTargets } from "../model/score";
import { EditRequest, factKey, LocalityClass, LOCALITY_CLASSES } from "../datasets/editRecord";
import { TemplateGroup, World } from "../world/world";

export type ProbeKind = "edit" | "paraphrase" | `locality:${LocalityClass}` | "probe";

export interface Probe {
  prompt: string;
  kind: ProbeKind;
  /** The answer the probe should give: the new target for edit/paraphrase, the world's answer for locality. */
  expected?: string;
  /** Template group of a paraphrase (held-out templates were never used to train the editor). */
  group?: TemplateGroup;
}

export interface Prediction {
  token: string;
  prob: number;
}

export interface ProbeResult extends Probe {
  before: Prediction;
  after: Prediction;
  /** With `expected`: whether every token of the expected answer is the argmax (teacher-forced), before and after. */
  right?: { before: boolean; after: boolean };
}

/**
 * The probes for a set of edit requests: each prompt; when it is a known template of a world fact,
 * all other templates of that fact (paraphrases) and locality probes of every class (same subject
 * other relation, same relation other subject, unrelated); then the caller's paraphrases and probes.
 */
export function probesFor(world: World | null, requests: readonly EditRequest[], extra: readonly string[] = [], perClass = 3, paraphrases: readonly Probe[] = []): Probe[] {
  const probes: Probe[] = [];
  const seen = new Set<string>();
  const push = (p: Probe) => {
    if (seen.has(p.prompt)) return;
    seen.add(p.prompt);
    probes.push(p);
  };
  for (const r of requests) push({ prompt: r.prompt, kind: "edit", expected: r.target });
  for (const p of paraphrases) push(p);
  const matched = world ? requests.map((r) => ({ r, m: world.matchPrompt(r.prompt) })) : [];
  for (const { r, m } of matched) {
    if (!m || !world) continue;
    for (const group of ["train", "heldout"] as const) {
      for (const p of world.prompts(m.fact.subject, m.fact.relation, group)) push({ prompt: p, kind: "paraphrase", expected: r.target, group });
    }
  }
  const editedKeys = new Set(matched.filter((x) => x.m).map((x) => factKey(x.m!.fact)));
  for (const { m } of matched) {
    if (!m || !world) continue;
    const f = m.fact;
    const type = world.subjects.find((s) => s.name === f.subject)?.type;
    const pick = (cls: LocalityClass) =>
      world.facts
        .filter((g) => !editedKeys.has(factKey(g)))
        .filter((g) => {
          const sameS = g.subject === f.subject;
          const sameR = g.relation === f.relation;
          if (cls === "same_subject") return sameS && !sameR;
          if (cls === "same_relation") return !sameS && sameR;
          return !sameS && !sameR && world.subjects.find((s) => s.name === g.subject)?.type === type;
        })
        .slice(0, perClass);
    for (const cls of LOCALITY_CLASSES) {
      for (const g of pick(cls)) push({ prompt: world.prompts(g.subject, g.relation, "train")[0], kind: `locality:${cls}`, expected: g.object });
    }
  }
  for (const p of extra) push({ prompt: p, kind: "probe" });
  return probes;
}

/**
 * Top-1 next token before (model `pre`) and after (model `post`) for every probe, and for probes
 * with an expected answer whether all of its tokens are the argmax (a multi-word answer is right
 * only when every word is).
 */
export function runProbes(pre: LanguageModel, post: LanguageModel, probes: readonly Probe[]): ProbeResult[] {
  const prompts = probes.map((p) => p.prompt);
  const before = nextTokenTopK(pre, prompts, 1);
  const after = nextTokenTopK(post, prompts, 1);
  const judged = probes.map((p, i) => [p, i] as const).filter(([p]) => p.expected !== undefined);
  const targets = judged.map(([p]) => ({ prompt: p.prompt, target: p.expected! }));
  const sPre = targets.length ? scoreTargets(pre, targets) : [];
  const sPost = targets.length ? scoreTargets(post, targets) : [];
  const right = new Map(judged.map(([, i], j) => [i, { before: sPre[j].exact, after: sPost[j].exact }]));
  return probes.map((p, i) => ({
    ...p,
    before: { token: before[i].top[0].token, prob: before[i].top[0].prob },
    after: { token: after[i].top[0].token, prob: after[i].top[0].prob },
    ...(right.has(i) ? { right: right.get(i)! } : {}),
  }));
}

/** First word of an expected answer (the probes compare next-token predictions). */
export function firstWord(s: string | undefined): string | undefined {
  return s?.trim().split(/\s+/)[0];
}

/** Probe results as table rows (kind, prompt, before, after, ok): for `showTable` or text. */
export function probeTableRows(rows: readonly ProbeResult[]): { kind: string; prompt: string; before: string; after: string; ok: string }[] {
  return rows.map((r) => ({
    kind: r.kind + (r.group === "heldout" ? " (held-out)" : ""),
    prompt: r.prompt,
    before: `${r.before.token} ${r.before.prob.toFixed(2)}`,
    after: `${r.after.token} ${r.after.prob.toFixed(2)}`,
    ok: r.right === undefined ? "" : r.right.after ? "yes" : "NO",
  }));
}

/** A fixed-width text table of probe results. */
export function formatProbeTable(rows: readonly ProbeResult[]): string {
  const head = ["kind", "prompt", "before", "after", "ok"];
  const body = probeTableRows(rows).map((r) => [r.kind, r.prompt, r.before, r.after, r.ok]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd();
  return [line(head), line(w.map((n) => "-".repeat(n))), ...body.map(line)].join("\n");
}
