/**
 * The lifelong benchmark: one seeded stream of N edits of distinct facts, applied one after another
 * to the same model by each method, measured after every block of `every` edits and at the end:
 *
 *  - retention: the fraction of all edits so far whose edit prompt gives its new target (exact);
 *  - paraphrase: the same on their held-out paraphrases (templates no method saw);
 *  - locality: the fraction of fixed probe prompts (unedited facts, every template) whose answer
 *    argmax is unchanged, overall and by class: `same_subject` probes share a subject with an edit
 *    made so far (a different relation), `other` probes do not;
 *  - acc_dd: the probes' accuracy on their true answers, before − after;
 *  - weight_growth: max over the changed weights of ‖W − W₀‖_F / ‖W₀‖_F;
 *  - edits per second: edits over the time spent editing (measurement excluded).
 *
 * Streams: the facts world (distinct facts from every split, each with a new target drawn within its
 * relation; probes are other facts) or a dataset's records (zsRE, CounterFact: records in seeded
 * order; probes are the locality prompts of records outside the stream).
 */
import { EditRecord, factKey } from "../datasets/editRecord";
import type { TextExample } from "../model/batch";
import type { EditedModel } from "../model/languageModel";
import { ParamsModel, replaceModel } from "../model/paramsModel";
import { Rng } from "../model/rng";
import { scoreTargets } from "../model/score";
import { disposeUpdate } from "../model/weightUpdate";
import type { World } from "../world/world";
import type { EditMethod } from "./methods";
import { mean, unchanged } from "./metrics";
import { relativeWeightChange } from "./evaluate";
import * as tf from "@tensorflow/tfjs";

/** A fixed prompt whose answer must not move, with its fact's subject (for the class). */
export interface LifelongProbe {
  prompt: string;
  target: string;
  subject: string;
}

export interface LifelongStream {
  /** The edits in order (`prompts[0]` is the edit prompt, `heldout_prompts` the paraphrases). */
  edits: EditRecord[];
  probes: LifelongProbe[];
  /**
   * Prompts with their answers that methods may keep (AlphaEdit's preserved keys, FT+KL's locality
   * text): neither edited nor probed, the way MEMIT and AlphaEdit preserve generic text and are
   * judged on other prompts.
   */
  preserve: TextExample[];
  /** Where the stream came from ("world seed 0", "counterfact:data/...  seed 0"). */
  source: string;
}

export interface LifelongPoint {
  edits: number;
  retention: number;
  paraphrase: number;
  locality: { overall: number; same_subject: number; other: number };
  acc_dd: number;
  weight_growth: number;
  /** Seconds spent editing so far (measurement excluded). */
  edit_seconds: number;
}

export interface LifelongCurve {
  method: string;
  points: LifelongPoint[];
  /** Edits per second over the whole stream. */
  edits_per_sec: number;
  /** Wall time of the run, measurement included. */
  seconds: number;
}

/**
 * The facts-world stream: `n` distinct facts (seeded shuffle of every fact, every split) with new
 * targets within their relations; `nProbes` other facts in every template as probes, and
 * `nPreserve` further facts in every template as the preserved set. Probes and preserved facts come
 * from the end of the shuffled list, so they are the same for every n at one seed.
 */
export function worldStream(world: World, n: number, seed = 0, nProbes = 60, nPreserve = 200): LifelongStream {
  const rng = new Rng(seed * 104729 + 17);
  const facts = rng.shuffle(world.facts);
  const room = facts.length - nProbes - nPreserve;
  if (n > room) throw new Error(`the world has ${facts.length} facts: with ${nProbes} probe and ${nPreserve} preserved facts, a stream has room for at most ${room} edits, not ${n}`);
  const probeFacts = facts.slice(facts.length - nProbes);
  const everyTemplate = (f: { subject: string; relation: string }) => [...world.prompts(f.subject, f.relation, "train"), ...world.prompts(f.subject, f.relation, "heldout")];
  const preserve = facts.slice(room, room + nPreserve).flatMap((f) => everyTemplate(f).map((prompt) => ({ prompt, target: f.object })));
  const edits: EditRecord[] = facts.slice(0, n).map((f, i) => {
    const target = rng.choice(world.objects(f.relation).filter((o) => o !== f.object));
    return { case_id: i, split: "test", subject: f.subject, relation: f.relation, target_true: f.object, target_new: target, prompts: world.prompts(f.subject, f.relation, "train"), heldout_prompts: world.prompts(f.subject, f.relation, "heldout"), locality: [] };
  });
  const probes = probeFacts.flatMap((f) => everyTemplate(f).map((prompt) => ({ prompt, target: f.object, subject: f.subject })));
  return { edits, probes, preserve, source: `facts world, seed ${seed}` };
}

/**
 * A dataset stream: `n` records in seeded order, each a distinct subject-relation; the probes are
 * the locality prompts of up to `nProbes` further records, the preserved set those of up to
 * `nPreserve` records after them.
 */
export function datasetStream(records: readonly EditRecord[], n: number, seed: number, source: string, nProbes = 60, nPreserve = 200): LifelongStream {
  const rng = new Rng(seed * 104729 + 17);
  const seen = new Set<string>();
  const distinct = rng.shuffle(records).filter((r) => {
    const k = `${factKey(r)}\u0000${r.prompts[0]}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  if (n >= distinct.length) throw new Error(`${source} has ${distinct.length} distinct records: a stream of ${n} edits leaves none for locality probes`);
  const probes = distinct.slice(n, n + nProbes).flatMap((r) => r.locality.map((l) => ({ prompt: l.prompt, target: l.target, subject: l.subject ?? "" })));
  const preserve = distinct.slice(n + nProbes, n + nProbes + nPreserve).flatMap((r) => r.locality.map((l) => ({ prompt: l.prompt, target: l.target })));
  return { edits: distinct.slice(0, n), probes, preserve, source: `${source}, seed ${seed}` };
}

/** The probes' classes after the edits `done`: same_subject when an edit so far shares the subject. */
function probeClasses(probes: readonly LifelongProbe[], done: readonly EditRecord[]): ("same_subject" | "other")[] {
  const subjects = new Set(done.map((r) => r.subject));
  return probes.map((p) => (p.subject && subjects.has(p.subject) ? "same_subject" : "other"));
}

/**
 * Run `method` through the stream on `model` (never changed), measuring after every `every` edits
 * and at the end. `onPoint` reports each measurement, `onEdit` each edit (edits so far, seconds of
 * editing so far). Keeps only the newest edited model.
 */
export function runLifelong(model: EditedModel, method: EditMethod, stream: LifelongStream, every = 10, onPoint?: (p: LifelongPoint) => void, onEdit?: (done: number, editSeconds: number) => void): LifelongCurve {
  if (!(Number.isInteger(every) && every > 0)) throw new Error(`measure every N edits: N must be a positive integer, got ${every}`);
  const t0 = performance.now();
  const probeExamples = stream.probes.map((p) => ({ prompt: p.prompt, target: p.target }));
  const pre = scoreTargets(model, probeExamples);
  const accPre = mean(pre.map((s) => (s.exact ? 1 : 0)));
  const base = model instanceof ParamsModel ? model.params : null;
  const points: LifelongPoint[] = [];
  let current: EditedModel = model;
  let editMs = 0;
  try {
    stream.edits.forEach((r, i) => {
      const t = performance.now();
      const e = method.edit(current, [{ prompt: r.prompts[0], target: r.target_new }]);
      editMs += performance.now() - t;
      if (e.update) disposeUpdate(e.update);
      if (e.state) tf.dispose(Object.values(e.state.tensors));
      if (current !== model) replaceModel(current, e.model);
      current = e.model;
      const done = i + 1;
      onEdit?.(done, editMs / 1000);
      if (done % every !== 0 && done !== stream.edits.length) return;
      const edits = stream.edits.slice(0, done);
      const ret = scoreTargets(current, edits.map((d) => ({ prompt: d.prompts[0], target: d.target_new })));
      const para = scoreTargets(current, edits.flatMap((d) => d.heldout_prompts.map((p) => ({ prompt: p, target: d.target_new }))));
      const post = scoreTargets(current, probeExamples);
      const same = post.map((s, j) => unchanged(pre[j].argmax, s.argmax));
      const cls = probeClasses(stream.probes, edits);
      const byClass = (c: string) => {
        const xs = same.filter((_, j) => cls[j] === c);
        return xs.length ? mean(xs) : NaN;
      };
      const point: LifelongPoint = {
        edits: done,
        retention: mean(ret.map((s) => (s.exact ? 1 : 0))),
        paraphrase: para.length ? mean(para.map((s) => (s.exact ? 1 : 0))) : NaN,
        locality: { overall: mean(same), same_subject: byClass("same_subject"), other: byClass("other") },
        acc_dd: accPre - mean(post.map((s) => (s.exact ? 1 : 0))),
        weight_growth: base && current instanceof ParamsModel ? relativeWeightChange(base, current.params) : NaN,
        edit_seconds: editMs / 1000,
      };
      points.push(point);
      onPoint?.(point);
    });
  } finally {
    if (current !== model) current.dispose();
  }
  return { method: method.name, points, edits_per_sec: stream.edits.length / Math.max(editMs / 1000, 1e-9), seconds: (performance.now() - t0) / 1000 };
}
