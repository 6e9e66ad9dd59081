// The tslab kernel, registered privately for this checkout: `tslab install --prefix <root>/.jupyter`
// writes <root>/.jupyter/share/jupyter/kernels/tslab, and JUPYTER_PATH points Jupyter at it. The
// machine's own kernel registrations (system-wide or per user) are never changed.
const { spawnSync } = require("child_process");
const fs = require("fs");
const path = require("path");

const root = path.join(__dirname, "..");
const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const prefix = path.join(root, ".jupyter");
const share = path.join(prefix, "share", "jupyter");

/** Register the kernel under <root>/.jupyter and return the environment that finds it. */
function privateKernelEnv() {
  const tslab = path.join(root, "node_modules", ".bin", "tslab");
  const reg = spawnSync(tslab, ["install", "--python", python, "--binary", tslab, "--prefix", prefix], { stdio: ["ignore", "ignore", "inherit"] });
  if (reg.status !== 0) {
    console.error(`could not register the tslab kernel in ${prefix}`);
    process.exit(reg.status ?? 1);
  }
  const jp = process.env.JUPYTER_PATH;
  return { ...process.env, JUPYTER_PATH: jp ? `${share}${path.delimiter}${jp}` : share };
}

/**
 * Put plotly.js beside the notebooks (notebooks/plotly.min.js, not committed): executed notebooks
 * load it from there through Jupyter's /files/ route instead of carrying 4.8 MB each.
 */
function servePlotly() {
  const from = require.resolve("plotly.js-dist-min/plotly.min.js", { paths: [root] });
  const to = path.join(root, "notebooks", "plotly.min.js");
  if (!fs.existsSync(to) || fs.statSync(to).size !== fs.statSync(from).size) fs.copyFileSync(from, to);
}

module.exports = { root, python, share, privateKernelEnv, servePlotly };
