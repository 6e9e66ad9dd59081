/**
 * What a tutorial notebook holds across its cells, so that any cell can run again after the
 * notebook's clean-up cell:
 *  - the world, the models and the editors are *handles*: `nb.model()` loads a model folder once and
 *    returns a view of it that loads the folder again when a cell uses it after the clean-up freed it
 *    (editors likewise, against the model they were loaded for);
 *  - what the cells make (edits, edited models) is handed to `nb.keep`, and the clean-up frees it; a
 *    cell that reads such a value after the clean-up, without running the cell that made it again,
 *    gets a one-line error naming the variable and telling which cell to run.
 *
 * One session per kernel (module state: a notebook's cells share it, and running the set-up cell
 * again returns the same session).
 */
import * as path from "path";
import { inspect } from "util";
import { loadEditor } from "../extensions/editorExtensions";
import { disposeEditor, Editor } from "../mend/editor";
import { backendBanner, initBackend } from "../model/backend";
import { loadModel, Model } from "../model/modelFolder";
import { World } from "../world/world";

/** An error a notebook shows as its one-line message (tslab prints an error's stack). */
export class NotebookError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotebookError";
    this.stack = `${this.name}: ${message}`;
  }

  /** One line in the notebook (tslab prints errors with console.error, which inspects them). */
  [inspect.custom](): string {
    return `${this.name}: ${this.message}`;
  }
}

interface Kept {
  name: string;
  free: () => void;
}

/** A view of the value `current()` returns, looked up on every use (so a reloaded value takes over). */
function handle<T extends object>(first: T, current: () => T): T {
  return new Proxy(first, {
    get: (_t, prop) => Reflect.get(current(), prop),
    set: (_t, prop, value) => Reflect.set(current(), prop, value),
    has: (_t, prop) => Reflect.has(current(), prop),
    ownKeys: () => Reflect.ownKeys(current()),
    getOwnPropertyDescriptor: (_t, prop) => {
      const d = Reflect.getOwnPropertyDescriptor(current(), prop);
      return d && { ...d, configurable: true };
    },
  });
}

const modelLive = (m: Model) => !Object.values(m.params).some((t) => t.isDisposed);
const editorLive = (e: Editor) => !Object.values(e.editLrs).some((v) => v.isDisposed);

export class NotebookSession {
  private worldValue: World | null = null;
  private readonly models = new Map<string, { value: Model; view: Model }>();
  private readonly editors = new Map<string, { value: Editor; view: Editor }>();
  private kept: Kept[] = [];
  private readonly freed = new Set<string>();

  /** The facts world (data/world.json, from the notebooks folder). */
  world(file = "../data/world.json"): World {
    return (this.worldValue ??= World.load(file));
  }

  /** A model folder as a handle: loaded on first use, and again after the clean-up freed it. */
  model(dir = "../checkpoints/base"): Model {
    const key = path.resolve(dir);
    const known = this.models.get(key);
    if (known) return known.view;
    const slot = { value: loadModel(dir), view: null as unknown as Model };
    slot.view = handle(slot.value, () => {
      if (!modelLive(slot.value)) slot.value = loadModel(dir);
      return slot.value;
    });
    this.models.set(key, slot);
    return slot.view;
  }

  /**
   * An editor folder (official or with extensions) for a model handle of this notebook: loaded on
   * first use, and again (against the model as it is then loaded) after the clean-up freed it.
   */
  editor(dir = "../checkpoints/editor", model: Model = this.model()): Editor {
    const key = `${path.resolve(dir)}|${[...this.models.values()].findIndex((m) => m.view === model)}`;
    const known = this.editors.get(key);
    if (known) return known.view;
    const load = () => loadEditor(dir, model.config, model.params);
    const slot = { value: load(), view: null as unknown as Editor };
    slot.view = handle(slot.value, () => {
      if (!editorLive(slot.value)) slot.value = load();
      return slot.value;
    });
    this.editors.set(key, slot);
    return slot.view;
  }

  /**
   * Register something a cell made (`name`: the cell's variable) for the clean-up to free with
   * `free`. Running the cell again frees the value it made before. Returns a view of `value` that,
   * once the clean-up has freed it, answers any use with a one-line error naming the cell to run.
   */
  keep<T extends object>(name: string, value: T, free: (v: T) => void): T {
    this.kept = this.kept.filter((k) => k.name !== name || (k.free(), false));
    this.kept.push({ name, free: () => free(value) });
    this.freed.delete(name);
    const freed = this.freed;
    const check = () => {
      if (freed.has(name)) throw new NotebookError(`\`${name}\` was freed by the clean-up cell: run the cell that makes it (\`const ${name} = ...\`) first`);
    };
    return new Proxy(value, {
      get(target, prop) {
        check();
        return Reflect.get(target, prop);
      },
      has(target, prop) {
        check();
        return Reflect.has(target, prop);
      },
      ownKeys(target) {
        check();
        return Reflect.ownKeys(target);
      },
    });
  }

  /**
   * Like `keep`, for a value later parts of the notebook build on (an edit, an edited model): after
   * the clean-up freed it, the next use makes it again with `make` (which may use other derived
   * values), instead of answering with an error.
   */
  derive<T extends object>(name: string, make: () => T, free: (v: T) => void): T {
    this.kept = this.kept.filter((k) => k.name !== name || (k.free(), false));
    this.freed.delete(name);
    const slot = { value: make() as T | null };
    const entry: Kept = {
      name,
      free: () => {
        if (slot.value) free(slot.value);
        slot.value = null;
      },
    };
    this.kept.push(entry);
    const first = slot.value!;
    return handle(first, () => {
      if (!slot.value) {
        slot.value = make();
        if (!this.kept.includes(entry)) this.kept.push(entry);
        this.freed.delete(name);
      }
      return slot.value;
    });
  }

  /**
   * Frees everything the cells kept and the session loaded (the notebook's clean-up cell). Cells may
   * run again afterwards. Returns the names of the freed values.
   */
  cleanup(): { freed: string[] } {
    const names = this.kept.map((k) => k.name);
    for (const k of this.kept.reverse()) k.free();
    this.kept = [];
    for (const n of names) this.freed.add(n);
    for (const { value } of this.editors.values()) if (editorLive(value)) disposeEditor(value);
    for (const { value } of this.models.values()) if (modelLive(value)) value.dispose();
    return { freed: names };
  }
}

let current: NotebookSession | null = null;

/** The kernel's notebook session. */
export function notebookSession(): NotebookSession {
  return (current ??= new NotebookSession());
}

/** A notebook's first cell: start the tfjs backend (once per kernel), print it in one line, return the session. */
export async function startNotebook(): Promise<NotebookSession> {
  console.log(backendBanner(await initBackend()));
  return notebookSession();
}
