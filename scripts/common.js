/**
 * What the experiment scripts share: `--name value` flags, and the shipped base model with an editor
 * loaded on the chosen backend.
 */
const path = require("path");
const mend = require(path.join(__dirname, "..", "dist"));

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

module.exports = { mend, ROOT, flags, loadShipped };
