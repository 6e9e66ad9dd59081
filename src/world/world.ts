/**
 * The facts world (data/world.json): countries and people with relations as of 2020, each relation
 * with natural templates split into a training group and a held-out group.
 *
 * This file turns the world into
 *  - facts (subject, relation, object) and their prompts per template group;
 *  - the pretraining corpus: every fact in every template (the base model should know its world in
 *    every phrasing; the held-out group is held out from *editor* training, not from pretraining);
 *  - MEND edit records: edit/equivalent prompts from the training templates, held-out paraphrases
 *    for evaluation, and locality examples tagged by class, in train/val/test splits by subject.
 */
import * as fs from "fs";
import * as path from "path";
import { Rng } from "../model/rng";
import type { TextExample } from "../model/batch";
import { EditRecord, LocalityExample, Split } from "../datasets/editRecord";
import { readJsonFile } from "../model/jsonFile";

export type TemplateGroup = "train" | "heldout";

export interface RelationSpec {
  subject_type: "country" | "person";
  templates: Record<TemplateGroup, string[]>;
}

export interface WorldFile {
  description: string;
  year: number;
  relations: Record<string, RelationSpec>;
  countries: Record<string, string>[];
  people: Record<string, string>[];
  test_subjects: string[];
  reserved_edits: { subject: string; relation: string; target: string }[];
}

export interface Fact {
  subject: string;
  relation: string;
  object: string;
}

/** Put the subject into a template; "the United States" is capitalised at the start of a sentence. */
function fillTemplate(template: string, subject: string): string {
  const s = template.startsWith("{}") ? subject.charAt(0).toUpperCase() + subject.slice(1) : subject;
  return template.replace("{}", () => s); // a replacer function: "$&" in a name stays literal
}

/** Default location of the world description: `<package root>/data/world.json`. */
function defaultWorldPath(): string {
  return path.join(__dirname, "..", "..", "data", "world.json");
}

export class World {
  readonly facts: Fact[];
  readonly subjects: { name: string; type: "country" | "person" }[];
  private readonly byKey = new Map<string, Fact>();
  /** Current heads of state (cached: `newTargets` asks once per head-of-state fact). */
  private heads?: Set<string>;

  constructor(readonly spec: WorldFile) {
    this.facts = [];
    this.subjects = [];
    const add = (rows: Record<string, string>[], type: "country" | "person") => {
      for (const row of rows) {
        this.subjects.push({ name: row.name, type });
        for (const [rel, r] of Object.entries(spec.relations)) {
          if (r.subject_type !== type) continue;
          if (!row[rel]) throw new Error(`world: ${type} "${row.name}" has no "${rel}"`);
          const f = { subject: row.name, relation: rel, object: row[rel] };
          this.facts.push(f);
          this.byKey.set(`${f.subject}\u0000${rel}`, f);
        }
      }
    };
    add(spec.countries, "country");
    add(spec.people, "person");
  }

  static load(file = defaultWorldPath()): World {
    if (!fs.existsSync(file)) throw new Error(`world file "${file}" not found`);
    return new World(readJsonFile(file) as WorldFile);
  }

  get relations(): string[] {
    return Object.keys(this.spec.relations);
  }

  fact(subject: string, relation: string): Fact | undefined {
    return this.byKey.get(`${subject}\u0000${relation}`);
  }

  /** Prompts of a fact's subject+relation for one template group. */
  prompts(subject: string, relation: string, group: TemplateGroup): string[] {
    const r = this.spec.relations[relation];
    if (!r) throw new Error(`unknown relation "${relation}"; known: ${this.relations.join(", ")}`);
    return r.templates[group].map((t) => fillTemplate(t, subject));
  }

  /** Distinct objects of a relation (the candidates for new edit targets). */
  objects(relation: string): string[] {
    const objs = new Set<string>();
    for (const f of this.facts) if (f.relation === relation) objs.add(f.object);
    if (relation === "head_of_state") for (const p of this.spec.people) objs.add(p.name); // any person can lead
    return [...objs];
  }

  /** Every fact in every template: {text, prompt, object, group}. */
  corpus(): { prompt: string; object: string; group: TemplateGroup; fact: Fact }[] {
    const out: { prompt: string; object: string; group: TemplateGroup; fact: Fact }[] = [];
    for (const f of this.facts) {
      for (const group of ["train", "heldout"] as const) {
        for (const p of this.prompts(f.subject, f.relation, group)) out.push({ prompt: p, object: f.object, group, fact: f });
      }
    }
    return out;
  }

  /** All words of the world (templates, names, objects), for building the vocabulary. */
  texts(): string[] {
    return this.corpus().map((c) => `${c.prompt} ${c.object}`);
  }

  /**
   * Find which fact and template a prompt is (exact match after whitespace folding), so the CLI can
   * list the world's paraphrases of an edited fact.
   */
  matchPrompt(prompt: string): { fact: Fact; group: TemplateGroup } | null {
    const norm = (s: string) => s.trim().replace(/\s+/g, " ");
    const want = norm(prompt);
    for (const f of this.facts) {
      for (const group of ["train", "heldout"] as const) {
        if (this.prompts(f.subject, f.relation, group).some((p) => norm(p) === want)) return { fact: f, group };
      }
    }
    return null;
  }

  /**
   * The request's training-template paraphrases as requests with the same target (the request's own
   * prompt left out): a fine-tuning set that covers the fact, not only its sentence. An error for a
   * prompt that is none of the world's templates.
   */
  trainingParaphrases(request: { prompt: string; target: string }): { prompt: string; target: string }[] {
    const m = this.matchPrompt(request.prompt);
    if (!m) throw new Error(`"${request.prompt}" is none of the world's templates: it has no paraphrases`);
    const own = request.prompt.trim().replace(/\s+/g, " ");
    return this.prompts(m.fact.subject, m.fact.relation, "train").filter((p) => p !== own).map((prompt) => ({ prompt, target: request.target }));
  }

  /**
   * Subjects per split. `test_subjects` are always test; the rest are shuffled (seeded) and split
   * separately for countries and people so that each split gets about `fractions` of them
   * (default 79/8/13%: the test split then holds >= 125 distinct facts, enough for a batched edit
   * of k = 125 distinct facts, the largest k of the paper's Table 5).
   */
  splits(seed = 0, fractions: Record<"val" | "test", number> = { val: 0.08, test: 0.13 }): Record<Split, string[]> {
    const rng = new Rng(seed);
    const out: Record<Split, string[]> = { train: [], val: [], test: [...this.spec.test_subjects] };
    for (const type of ["country", "person"] as const) {
      const all = this.subjects.filter((s) => s.type === type);
      const fixed = all.filter((s) => this.spec.test_subjects.includes(s.name)).length;
      const names = rng.shuffle(all.filter((s) => !this.spec.test_subjects.includes(s.name)).map((s) => s.name));
      const nTest = Math.max(0, Math.round(all.length * fractions.test) - fixed);
      const nVal = Math.round(all.length * fractions.val);
      out.test.push(...names.slice(0, nTest));
      out.val.push(...names.slice(nTest, nTest + nVal));
      out.train.push(...names.slice(nTest + nVal));
    }
    return out;
  }

  /**
   * New edit targets for a fact. For heads of state, half are people who lead no country (as a new
   * head of state usually is: Biden in 2021) and half are other current heads; otherwise uniform.
   */
  private newTargets(f: Fact, candidates: string[], n: number, rng: Rng): string[] {
    if (f.relation !== "head_of_state") return rng.sample(candidates, n);
    const heads = (this.heads ??= new Set(this.facts.filter((g) => g.relation === "head_of_state").map((g) => g.object)));
    const outsiders = rng.shuffle(candidates.filter((c) => !heads.has(c)));
    const insiders = rng.shuffle(candidates.filter((c) => heads.has(c)));
    return Array.from({ length: Math.min(n, candidates.length) }, (_, i) => (i % 2 === 0 ? outsiders.shift() ?? insiders.shift()! : insiders.shift() ?? outsiders.shift()!));
  }

  private isReserved(subject: string, relation: string, target: string): boolean {
    return this.spec.reserved_edits.some((r) => r.subject === subject && r.relation === relation && r.target === target);
  }

  /**
   * Edit records for one split: `perFact` new targets per fact of the split's subjects, each with
   * locality examples of every class drawn from the same split's subjects.
   */
  editRecords(split: Split, opts: { seed?: number; perFact?: number; nSameRelation?: number; nUnrelated?: number } = {}): EditRecord[] {
    const { seed = 0, perFact = split === "train" ? 5 : split === "val" ? 2 : 1, nSameRelation = 3, nUnrelated = 3 } = opts;
    const subjects = new Set(this.splits(seed)[split]);
    const rng = new Rng(seed * 7919 + ["train", "val", "test"].indexOf(split) + 1);
    const facts = this.facts.filter((f) => subjects.has(f.subject));
    const anyPrompt = (f: Fact) => rng.choice([...this.prompts(f.subject, f.relation, "train"), ...this.prompts(f.subject, f.relation, "heldout")]);
    const records: EditRecord[] = [];
    for (const f of facts) {
      const candidates = this.objects(f.relation).filter((o) => o !== f.object && !this.isReserved(f.subject, f.relation, o));
      for (const target of this.newTargets(f, candidates, perFact, rng)) {
        const loc: LocalityExample[] = [];
        for (const g of facts.filter((g) => g.subject === f.subject && g.relation !== f.relation)) loc.push({ class: "same_subject", prompt: anyPrompt(g), target: g.object, subject: g.subject, relation: g.relation });
        for (const g of rng.sample(facts.filter((g) => g.subject !== f.subject && g.relation === f.relation), nSameRelation)) loc.push({ class: "same_relation", prompt: anyPrompt(g), target: g.object, subject: g.subject, relation: g.relation });
        for (const g of rng.sample(facts.filter((g) => g.subject !== f.subject && g.relation !== f.relation), nUnrelated)) loc.push({ class: "unrelated", prompt: anyPrompt(g), target: g.object, subject: g.subject, relation: g.relation });
        records.push({
          case_id: records.length,
          split,
          subject: f.subject,
          relation: f.relation,
          target_true: f.object,
          target_new: target,
          prompts: this.prompts(f.subject, f.relation, "train"),
          heldout_prompts: this.prompts(f.subject, f.relation, "heldout"),
          locality: loc,
        });
      }
    }
    return records;
  }
}

/**
 * A deterministic sample of training-split facts (first training template + true answer): never
 * edited in evaluation, so usable as fixed probes (sequential run) or FT+KL's locality text.
 */
export function trainingSplitProbes(world: World, n: number): TextExample[] {
  const train = new Set(world.splits(0).train);
  const facts = world.facts.filter((f) => train.has(f.subject));
  const step = Math.max(1, Math.floor(facts.length / n));
  return facts.filter((_, i) => i % step === 0).slice(0, n).map((f) => ({ prompt: world.prompts(f.subject, f.relation, "train")[0], target: f.object }));
}

/**
 * Every training-template prompt of the training-split facts: what the model already knows and no
 * evaluation edits (the preservation set of MEND-batch-pres, src/extensions/preserve.ts).
 */
export function trainingSplitPrompts(world: World): string[] {
  const train = new Set(world.splits(0).train);
  return world.facts.filter((f) => train.has(f.subject)).flatMap((f) => world.prompts(f.subject, f.relation, "train"));
}

/**
 * Every training-split fact in every template with its answer: what the lifelong methods preserve
 * when the model is edited outside a benchmark stream (AlphaEdit's preserved keys).
 */
export function trainingSplitFacts(world: World): TextExample[] {
  const train = new Set(world.splits(0).train);
  return world.facts.filter((f) => train.has(f.subject)).flatMap((f) => [...world.prompts(f.subject, f.relation, "train"), ...world.prompts(f.subject, f.relation, "heldout")].map((prompt) => ({ prompt, target: f.object })));
}
