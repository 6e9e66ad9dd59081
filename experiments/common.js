/**
 * What the experiment scripts share: `--name value` flags, the shipped base model with an editor
 * loaded on the chosen backend, where a prompt's subject is, and a method edit from a scaled low-rank update.
 */
const path = require("path");
const tf = require("@tensorflow/tfjs");
// The experiments read the library as one flat namespace (research scripts, not library code).
const lib = require(path.join(__dirname, "..", "dist"));
const dist = (f) => require(path.join(__dirname, "..", "dist", f));
const mend = Object.assign({}, ...["model", "world", "mend", "extensions", "baselines", "evaluation", "viz"].map((n) => lib[n]),
  { loadEditor: lib.extensions.loadEditor }, // any editor folder, with or without extensions
  dist("mend/edit"), dist("extensions/preserve"), dist("extensions/keyPrecond"), dist("extensions/calibrate"), dist("extensions/editorExtensions"));

const ROOT = path.join(__dirname, "..");

/** flag(name, default): the value after `--name` on the command line, else the default. */
function flags(argv = process.argv.slice(2)) {
  return (name, d) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : d);
}

/** The base model (checkpoints/base) and the editor `dir` (default checkpoints/<defaultEditor>), after initBackend. */
async function loadShipped(dir, defaultEditor = "editor") {
  await mend.initBackend();
  const model = mend.loadModel(path.join(ROOT, "checkpoints", "base"));
  const editor = mend.loadEditor(dir ?? path.join(ROOT, "checkpoints", defaultEditor), model.config, model.params);
  return { model, editor };
}

/**
 * subjectSpan(prompt): the positions (in the model's input, after <bos>) of the longest world
 * subject in `prompt` ({start, end} half-open) and of the prompt's last token (`last`).
 */
function subjectFinder(tokenizer, world) {
  const subjects = world.subjects.flatMap((s) => [s.name, s.name.charAt(0).toUpperCase() + s.name.slice(1)]).map((n) => tokenizer.encode(n));
  return (prompt) => {
    const p = tokenizer.encode(prompt);
    let best = null;
    for (const s of subjects)
      for (let i = 0; i + s.length <= p.length; i++)
        if (s.every((id, j) => p[i + j] === id) && (!best || s.length > best[1] - best[0])) best = [1 + i, 1 + i + s.length];
    if (!best) throw new Error(`no subject of the world in "${prompt}"`);
    return { start: best[0], end: best[1], last: p.length };
  };
}

/**
 * A method edit ({params, edited, latencyMs}) from a low-rank update whose rows are scaled per
 * request: W' = W + (s ∘ left)ᵀ right, s = scales[request of the row] (left = α·ũ [M, d_in],
 * right = δ̃ [M, d_out]; `withRequests` of edit.ts). Frees the update; the caller owns `edited`.
 */
function scaledEdit(model, update, scales, t0) {
  const edited = tf.tidy(() => Object.fromEntries(Object.entries(update).map(([name, u]) => {
    const s = tf.tensor2d(u.request.map((b) => scales[b]), [u.request.length, 1]); // [M, 1]
    return [name, tf.add(model.params[name], mend.denseUpdate({ alpha: tf.scalar(1), keys: tf.mul(u.left, s), values: u.right }))]; // left already carries α
  })));
  tf.dispose(Object.values(update).flatMap((u) => [u.left, u.right]));
  return { params: { ...model.params, ...edited }, edited, latencyMs: performance.now() - t0 };
}

module.exports = { mend, ROOT, flags, loadShipped, subjectFinder, scaledEdit };
