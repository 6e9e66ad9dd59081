/**
 * The MEND lab's web page (web/index.html): picks a tfjs backend, fetches and checks the shipped
 * checkpoints, builds the lab (lab.ts) and draws each edit's results. The URL query `prompt`,
 * `target`, `method`, `mode` and `backend` reproduce an edit when the page loads, so an edit can be
 * shared as a link. `<body data-status>`: loading, loaded, editing, ready (an edit's results are on
 * screen) or error (the message is shown).
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { fetchFolder, fetchJson } from "./fetchFolder";
import { EditView, Lab, LAB_METHODS, LabConfig, labFromFiles, StreamState } from "./lab";
import { directReads, Reads, settledReads } from "./settledReads";
import { WorldFile } from "../world/world";
import { useWasmKernels } from "../model/wasmKernels";

const BACKENDS = ["webgpu", "webgl", "wasm"] as const;
type Backend = (typeof BACKENDS)[number];

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const query = new URLSearchParams(location.search);

function setStatus(status: string, text?: string): void {
  document.body.dataset.status = status;
  if (text !== undefined) $("status").textContent = text;
}

function showError(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  const el = $("error");
  el.textContent = msg;
  el.hidden = false;
  setStatus("error");
  console.warn(msg); // a warning, not an error: an unknown word is the page working as it should
}

/** The best backend this browser offers: WebGPU with an adapter, else WebGL, else wasm. */
async function availableBackends(): Promise<Backend[]> {
  const out: Backend[] = [];
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (gpu && (await gpu.requestAdapter().catch(() => null))) out.push("webgpu");
  const canvas = document.createElement("canvas");
  if (canvas.getContext("webgl2") || canvas.getContext("webgl")) out.push("webgl");
  out.push("wasm");
  return out;
}

interface Started {
  /** The backend's name and how it runs, as the page shows it. */
  label: string;
  reads: Reads;
}

async function startBackend(wanted: string | null, available: Backend[]): Promise<Started> {
  if (wanted && !(BACKENDS as readonly string[]).includes(wanted)) throw new Error(`backend "${wanted}" is not one of ${BACKENDS.join(", ")}`);
  if (wanted && !available.includes(wanted as Backend)) throw new Error(`this browser has no ${wanted} backend (it has ${available.join(", ")})`);
  setWasmPaths(new URL("wasm/", location.href).href);
  if (!wanted) {
    // the first backend that starts and reads right
    const failures: string[] = [];
    for (const b of available) {
      try {
        return await startBackend(b, available);
      } catch (e) {
        failures.push((e as Error).message);
      }
    }
    throw new Error(`no backend works in this browser: ${failures.join("; ")}`);
  }
  const name = wanted;
  if (!(await tf.setBackend(name))) throw new Error(`the ${name} backend did not start`);
  await tf.ready();
  if (name === "wasm") useWasmKernels(true); // data-movement kernels that copy less, as in Node (wasmKernels.ts)
  // The library reads results synchronously (dataSync). tfjs' WebGPU backend reads synchronously
  // through a canvas, which in headless Chromium (SwiftShader) returns zeros and loses the device
  // with it: on WebGPU the lab's steps run in passes over asynchronous reads instead (settledReads.ts),
  // and its synchronous reads are never tried. Another backend whose synchronous reads fail is refused.
  if (name === "webgpu") return { label: "webgpu (each step's reads settled in passes)", reads: settledReads() };
  const failed = syncReadFailure(name);
  if (failed) throw new Error(`${failed}: this browser cannot run the lab on ${name}; choose another backend (${BACKENDS.filter((b) => b !== name).join(" or ")})`);
  const threads = name === "wasm" ? (crossOriginIsolated ? " (threaded: the page is cross-origin isolated)" : " (one thread: the page is not cross-origin isolated)") : "";
  return { label: name + threads, reads: directReads };
}

/** Why the backend's synchronous reads cannot be trusted, or null: 48 reads of computed values. */
function syncReadFailure(name: string): string | null {
  for (let i = 0; i < 48; i++) {
    const probe = tf.tidy(() => tf.sum(tf.mul(tf.range(0, 4), i)));
    const got = probe.dataSync()[0];
    probe.dispose();
    if (got !== 6 * i) return `the ${name} backend's synchronous read number ${i + 1} returned ${got} for ${6 * i}`;
  }
  return null;
}

function cell(text: string, cls?: string): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fillTable(id: string, head: string[], rows: (string | HTMLTableCellElement)[][]): void {
  const t = $<HTMLTableElement>(id);
  t.replaceChildren();
  const tr = t.createTHead().insertRow();
  for (const h of head) {
    const th = document.createElement("th");
    th.textContent = h;
    tr.appendChild(th);
  }
  const body = t.createTBody();
  for (const r of rows) {
    const row = body.insertRow();
    for (const c of r) row.appendChild(typeof c === "string" ? cell(c) : c);
  }
}

function barCell(value: number, max: number, text: string): HTMLTableCellElement {
  const td = cell("", "num");
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.style.width = `${Math.max(1, Math.round((60 * value) / Math.max(max, 1e-12)))}px`;
  td.append(bar, ` ${text}`);
  return td;
}

const pct = (p: number) => p.toFixed(3);

function drawEdit(v: EditView): void {
  (window as unknown as { mendLastEdit: EditView }).mendLastEdit = v; // for the browser tests and the curious
  const top = (rows: EditView["before"]) => rows.map((r) => [r.token, barCell(r.prob, 1, pct(r.prob))]);
  fillTable("before", ["token", "p"], top(v.before));
  fillTable("after", ["token", "p"], top(v.after));
  $("topk").hidden = false;
  fillTable(
    "probes",
    ["kind", "prompt", "should give", "before", "after", ""],
    v.probes.map((p) => [
      p.kind.replace("locality:", "neighbour: ").replace("_", " "),
      p.prompt,
      p.expected ?? "",
      `${p.before.token} ${pct(p.before.prob)}`,
      `${p.after.token} ${pct(p.after.prob)}`,
      p.right ? cell(p.right.after ? "✓" : "✗", p.right.after ? "ok" : "bad") : "",
    ]),
  );
  $("probes-panel").hidden = false;
  const maxRel = Math.max(...v.layers.map((l) => l.relative), 0);
  fillTable("layers", ["edited weight", "‖ΔW‖ / ‖W‖"], v.layers.map((l) => [l.weight, barCell(l.relative, maxRel, l.relative.toExponential(2))]));
  fillTable(
    "tokens",
    v.tokens.length ? ["weight", "token", "‖u‖", "‖δ‖", "‖ũ‖", "‖δ̃‖", "share of the update"] : [],
    v.tokens.map((t) => [t.weight, t.token, t["‖u‖"].toFixed(2), t["‖δ‖"].toExponential(2), t["‖ũ‖"].toFixed(2), t["‖δ̃‖"].toFixed(2), barCell(t.share, 1, t.share.toFixed(3))]),
  );
  $("tokens-details").hidden = v.tokens.length === 0;
  $("update-panel").hidden = v.layers.length === 0 && v.tokens.length === 0;
  const d = v.drift;
  const maxAbs = Math.max(1e-6, ...d.change.flat().filter(Number.isFinite).map(Math.abs));
  fillTable(
    "drift",
    ["relation", ...d.subjects],
    d.relations.map((r, i) => [
      r,
      ...d.change[i].map((x) => {
        const c = cell(Number.isFinite(x) ? x.toFixed(3) : "edited", "num");
        if (Number.isFinite(x)) {
          const a = Math.min(1, Math.abs(x) / maxAbs);
          c.style.background = x < 0 ? `rgba(214, 39, 40, ${a})` : `rgba(31, 119, 180, ${a})`;
        }
        return c;
      }),
    ]),
  );
  $("drift-panel").hidden = false;
  if (v.stream) drawStream(v.stream);
  setStatus("ready", `${v.method} on ${v.backend}: "${v.request.prompt}" → ${v.request.target} in ${v.latencyMs.toFixed(0)} ms (with every panel's scoring: ${(v.stepMs / 1000).toFixed(1)} s${v.passes > 1 ? ` in ${v.passes} passes` : ""}); top token now "${v.after[0].token}"`);
}

function drawStream(s: StreamState): void {
  $("stream-panel").hidden = false;
  $("stream-summary").textContent = `${s.edits.length} edit(s): retention ${s.retention.toFixed(3)}, locality ${s.locality.toFixed(3)}`;
  fillTable("stream", ["#", "method", "prompt", "target"], s.edits.map((e) => [String(e.id), e.method, e.prompt, e.target]));
  $<HTMLButtonElement>("undo").disabled = s.edits.length === 0;
}

function shareLink(): string {
  const q = new URLSearchParams();
  for (const k of ["prompt", "target", "method", "mode", "backend"]) q.set(k, $<HTMLInputElement>(k).value);
  return `${location.pathname}?${q}`;
}

async function main(): Promise<void> {
  const available = await availableBackends();
  // the menu first: if the backend asked for fails, another can be chosen from it
  const select = $<HTMLSelectElement>("backend");
  for (const b of available) select.add(new Option(b, b, false, b === query.get("backend")));
  select.addEventListener("change", () => {
    const q = new URLSearchParams(location.search);
    q.set("backend", select.value);
    location.search = q.toString(); // a backend holds the model's tensors: start again on the new one
  });
  const started = await startBackend(query.get("backend"), available);
  const backend = started.label;
  select.value = backend.split(" ")[0];
  const methodSelect = $<HTMLSelectElement>("method");
  for (const m of LAB_METHODS) methodSelect.add(new Option(m, m));
  const t0 = performance.now();
  let got = 0;
  const progress = (name: string, bytes: number) => {
    got += bytes;
    if (document.body.dataset.status === "error") return; // another file failed: keep its message
    setStatus("loading", `Loading the checkpoints on ${backend}: ${name} (${(got / 1e6).toFixed(1)} MB so far)…`);
  };
  const [modelFiles, editorFiles, world, config] = await Promise.all([
    fetchFolder(new URL("checkpoints/base/", location.href).href, ["model"], progress),
    fetchFolder(new URL("checkpoints/editor/", location.href).href, ["editor"], progress),
    fetchJson(new URL("data/world.json", location.href).href),
    fetchJson(new URL("lab.json", location.href).href),
  ]);
  const lab: Lab = labFromFiles(modelFiles, editorFiles, world as WorldFile, config as LabConfig, undefined, started.reads);
  const loadMs = performance.now() - t0;
  const prompts = $("prompts");
  for (const f of lab.world.facts.filter((_, i) => i % 7 === 0)) prompts.append(new Option(lab.world.prompts(f.subject, f.relation, "train")[0]));
  setStatus("loaded", `Ready on ${backend}: checkpoints fetched, checked and loaded in ${(loadMs / 1000).toFixed(1)} s. Pick a fact and a new target.`);
  for (const k of ["prompt", "target", "method", "mode"]) {
    const v = query.get(k);
    if (v !== null) $<HTMLInputElement>(k).value = v;
  }
  if (query.get("method") && !(LAB_METHODS as readonly string[]).includes(query.get("method")!)) throw new Error(`unknown method "${query.get("method")}" in the link; the lab offers ${LAB_METHODS.join(", ")}`);
  const run = async () => {
    $("error").hidden = true;
    const method = $<HTMLSelectElement>("method").value;
    const mode = $<HTMLSelectElement>("mode").value as "single" | "stream";
    setStatus("editing", method === "AlphaEdit" ? "Editing (AlphaEdit computes its preserved keys on its first edit: this takes a while)…" : "Editing…");
    await new Promise((r) => setTimeout(r, 20)); // let the status paint
    try {
      drawEdit(await lab.edit({ prompt: $<HTMLInputElement>("prompt").value, target: $<HTMLInputElement>("target").value }, method, mode));
      $<HTMLAnchorElement>("share").href = shareLink();
    } catch (e) {
      showError(e);
    }
  };
  $("edit-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void run();
  });
  $("mode").addEventListener("change", () => {
    if ($<HTMLSelectElement>("mode").value === "single") {
      lab.clearStream();
      $("stream-panel").hidden = true;
      $<HTMLButtonElement>("undo").disabled = true;
    }
  });
  $("undo").addEventListener("click", async () => {
    try {
      const s = await lab.undo();
      drawStream(s);
      const prompt = $<HTMLInputElement>("prompt").value;
      fillTable("after", ["token", "p"], (await lab.streamTop(prompt)).map((r) => [r.token, barCell(r.prob, 1, pct(r.prob))]));
      setStatus("ready", `Undone: ${s.edits.length} edit(s) left; "after" shows the model now`);
    } catch (e) {
      showError(e);
    }
  });
  $<HTMLButtonElement>("edit").disabled = false;
  (window as unknown as { mendLab: Lab }).mendLab = lab; // for the browser tests and the curious
  if (query.get("prompt") && query.get("target")) await run();
}

main().catch(showError);
