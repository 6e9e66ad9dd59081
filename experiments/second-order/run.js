const tf = require("@tensorflow/tfjs");
const { initBackend } = require("../../dist/model/backend");
const { gelu } = require("../../dist/model/gpt");
(async () => {
  await initBackend("wasm");
  // d/da of <v, grad_x f(a*x)> vs finite differences: a mixed second derivative through each op
  const x = tf.tensor2d([[0.3, -0.7, 1.1, 0.2], [0.5, 0.1, -0.4, 0.9]]);
  const v = tf.tensor2d([[1, 2, -1, 0.5], [0.3, -1, 2, 1]]);
  const W = tf.tensor2d([[0.2, -0.1], [0.4, 0.3], [-0.5, 0.2], [0.1, 0.6]]);
  const ops = {
    lse: (z) => tf.sum(tf.mul(tf.sub(z, tf.logSumExp(z, -1, true)), tf.tensor2d([[0, 1, 0, 0], [0, 0, 0, 1]]))),
    manualLse: (z) => { const m = tf.max(z, -1, true); const l = tf.add(tf.log(tf.sum(tf.exp(tf.sub(z, m)), -1, true)), m); return tf.sum(tf.mul(tf.sub(z, l), tf.tensor2d([[0, 1, 0, 0], [0, 0, 0, 1]]))); },
    logSoftmax: (z) => tf.sum(tf.mul(tf.logSoftmax(z), tf.tensor2d([[0, 1, 0, 0], [0, 0, 0, 1]]))),
    softmax: (z) => tf.sum(tf.mul(tf.softmax(z), z)),
    gelu: (z) => tf.sum(tf.mul(gelu(z), z)),
    moments: (z) => { const { mean, variance } = tf.moments(z, -1, true); return tf.sum(tf.div(tf.sub(z, mean), tf.sqrt(tf.add(variance, 1e-5)))).add(tf.sum(tf.square(tf.div(tf.sub(z, mean), tf.sqrt(tf.add(variance, 1e-5)))))); },
    matMul: (z) => tf.sum(tf.square(tf.matMul(z, W))),
    tanh: (z) => tf.sum(tf.mul(tf.tanh(z), z)),
  };
  for (const [name, f] of Object.entries(ops)) {
    try {
    const h = (a) => tf.sum(tf.mul(v, tf.grad((z) => f(z))(tf.mul(a, x))));
    const auto = tf.grad(h)(tf.scalar(1.0)).dataSync()[0];
    const e = 1e-2;
    const fd = (h(tf.scalar(1 + e)).dataSync()[0] - h(tf.scalar(1 - e)).dataSync()[0]) / (2 * e);
    console.log(name.padEnd(11), "auto", auto.toFixed(5), "fd", fd.toFixed(5));
    } catch (err) { console.log(name.padEnd(11), "ERROR", String(err).slice(0, 80)); }
  }
})();
