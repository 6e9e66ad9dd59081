import test from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { disposeParams, gelu as geluSigmoid, geluTanh, gptForward, paramShapes, Params, trainedEmbedding, useGeluForm } from "../dist/model/gpt";
import { meanNll } from "../dist/model/loss";
import { disposeBatch, makeBatch } from "../dist/model/batch";
import { leaked, maxAbsDiff, setup, tinyModel } from "./helpers";

const examples = [
  { prompt: "The president of France is", target: "Macron" },
  { prompt: "The capital of Peru is", target: "Lima" },
  { prompt: "Which party does Trump belong to ? Answer : the", target: "Republican Party" },
];

function lossAndGrads(params: Params, m: ReturnType<typeof tinyModel>) {
  const b = makeBatch(m.tokenizer, examples, "target", m.config.n_positions);
  const names = Object.keys(params);
  const out = tf.tidy(() => {
    const { logits } = gptForward(params, m.config, b.inputIds, { attentionMask: b.attentionMask });
    const g = tf.grads((...ws: tf.Tensor[]) =>
      meanNll(gptForward(params, m.config, b.inputIds, { attentionMask: b.attentionMask, replace: Object.fromEntries(names.map((n, i) => [n, ws[i]])) }).logits, b.labels),
    )(names.map((n) => params[n]));
    return { logits: logits.arraySync() as number[][][], grads: g.map((t) => t.arraySync()) };
  });
  disposeBatch(b);
  return out;
}

test("parameters have HF GPT2Model names and Conv1D shapes", () => {
  const s = paramShapes({ model_type: "gpt2", vocab_size: 10, n_positions: 8, n_embd: 4, n_layer: 2, n_head: 2, layer_norm_epsilon: 1e-5, initializer_range: 0.02 });
  assert.deepEqual(s["h.1.mlp.c_fc.weight"], [4, 16]);
  assert.deepEqual(s["h.1.mlp.c_proj.weight"], [16, 4]);
  assert.deepEqual(s["h.0.attn.c_attn.weight"], [4, 12]);
  assert.deepEqual(s["wte.weight"], [10, 4]);
  assert.ok(s["ln_f.bias"]);
});

test("forward: logits shape, capture returns layer inputs, probes shift outputs", async () => {
  await setup();
  const m = tinyModel(1);
  const b = makeBatch(m.tokenizer, examples, "target", m.config.n_positions);
  const [B, T] = b.inputIds.shape;
  tf.tidy(() => {
    const name = "h.1.mlp.c_fc.weight";
    const r = gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask, capture: [name] });
    assert.deepEqual(r.logits.shape, [B, T, m.config.vocab_size]);
    assert.deepEqual(r.inputs[name].shape, [B * T, m.config.n_embd]);
    const zero = gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask, probes: { [name]: tf.zeros([B * T, 4 * m.config.n_embd]) } });
    assert.ok(maxAbsDiff(zero.logits, r.logits) < 1e-6, "a zero probe changes nothing");
    assert.throws(() => gptForward(m.params, m.config, b.inputIds, { capture: ["h.9.mlp.c_fc.weight"] }), /not a linear weight/);
  });
  disposeBatch(b);
  disposeParams(m.params);
});

test("right padding does not change the logits of real tokens", async () => {
  await setup();
  const m = tinyModel(2);
  const single = makeBatch(m.tokenizer, [examples[0]], "target", m.config.n_positions);
  const padded = makeBatch(m.tokenizer, [examples[0], examples[2]], "target", m.config.n_positions);
  tf.tidy(() => {
    const a = gptForward(m.params, m.config, single.inputIds, { attentionMask: single.attentionMask }).logits;
    const T = a.shape[1];
    const b = tf.slice(gptForward(m.params, m.config, padded.inputIds, { attentionMask: padded.attentionMask }).logits, [0, 0, 0], [1, T, -1]);
    assert.ok(maxAbsDiff(a, b) < 1e-5);
  });
  disposeBatch(single);
  disposeBatch(padded);
  disposeParams(m.params);
});

test("cpu and wasm agree on logits and gradients", async () => {
  await setup();
  const m = tinyModel(3);
  const start = tf.getBackend();
  await tf.setBackend("wasm");
  const w = lossAndGrads(m.params, m);
  await tf.setBackend("cpu");
  const c = lossAndGrads(m.params, m);
  await tf.setBackend(start);
  const flat = (x: unknown): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x as number]);
  const maxDiff = (a: unknown, b: unknown) => {
    const fa = flat(a);
    const fb = flat(b);
    return Math.max(...fa.map((v, i) => Math.abs(v - fb[i])));
  };
  assert.ok(maxDiff(w.logits, c.logits) < 1e-4, "logits");
  w.grads.forEach((g, i) => assert.ok(maxDiff(g, c.grads[i]) < 1e-4, `gradient ${i}`));
  disposeParams(m.params);
});

test("no tensors leak over repeated forward/backward calls", async () => {
  await setup();
  const m = tinyModel(4);
  lossAndGrads(m.params, m); // warm-up (backend caches)
  const n = await leaked(() => {
    for (let i = 0; i < 5; i++) lossAndGrads(m.params, m);
  });
  assert.equal(n, 0);
  disposeParams(m.params);
});

test("a sequence longer than the context is a clear error", async () => {
  await setup();
  const m = tinyModel(5, { n_positions: 6 });
  assert.throws(() => makeBatch(m.tokenizer, [examples[2]], "target", m.config.n_positions), /longer than the model's context of 6/);
  disposeParams(m.params);
});

test("gelu is GPT-2's tanh approximation in both forms (values and derivative, against plain JS)", async () => {
  await setup();
  for (const gelu of [geluSigmoid, geluTanh]) {
  const xs = [-6, -3, -1.5, -0.5, -1e-3, 0, 1e-3, 0.3, 1, 2.5, 6];
  const ref = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const x = tf.tensor2d(xs, [1, xs.length]);
  const [yT, dyT] = tf.tidy(() => [gelu(x), tf.grad((t: tf.Tensor) => tf.sum(gelu(t as tf.Tensor2D)))(x)]);
  const [y, dy] = [yT.dataSync(), dyT.dataSync()];
  xs.forEach((v, i) => {
    assert.ok(Math.abs(y[i] - ref(v)) < 1e-6, `gelu(${v}) = ${y[i]}, expected ${ref(v)}`);
    const h = 1e-4;
    const num = (ref(v + h) - ref(v - h)) / (2 * h);
    assert.ok(Math.abs(dy[i] - num) < 1e-4, `gelu'(${v}) = ${dy[i]}, expected ${num}`);
  });
  tf.dispose([x, yT, dyT]);
  }
});

test("the sigmoid and tanh forms of GELU agree to float32 rounding on GPT-2's range, and the forward uses the form asked for", async () => {
  await setup();
  const x = tf.linspace(-8, 8, 4001).reshape([1, 4001]) as tf.Tensor2D;
  const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(geluSigmoid(x), geluTanh(x)))).dataSync()[0]);
  assert.ok(gap > 0 && gap <= 5e-7, `largest gap ${gap}`); // different arithmetic, same function
  const m = tinyModel(3);
  const ids = tf.tensor2d([[1, 2, 3, 4]], [1, 4], "int32");
  const logits = (form: "sigmoid" | "tanh") => {
    const prev = useGeluForm(form);
    try {
      return tf.tidy(() => gptForward(m.params, m.config, ids).logits.dataSync());
    } finally {
      useGeluForm(prev);
    }
  };
  const [a, b] = [logits("sigmoid"), logits("tanh")];
  assert.ok(a.some((v, i) => v !== b[i]), "the two forms gave bit-identical logits: the switch did nothing");
  assert.ok(a.every((v, i) => Math.abs(v - b[i]) < 1e-5));
  tf.dispose([x, ids]);
  disposeParams(m.params);
});

test("large base weights: custom ops with cached transposes give the same values and gradients, and free with the model", async () => {
  await setup();
  // n_embd 512: mlp weights have 2^20 elements, the size from which transposes are cached.
  const m = tinyModel(3, { n_embd: 512, n_layer: 2, n_head: 4 });
  const start = tf.memory().numTensors;
  const b = makeBatch(m.tokenizer, examples, "target", m.config.n_positions);
  const names = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"];
  // Differentiating the base tensors themselves (the custom path) vs copies of them (tfjs' own ops).
  const run = (ws: tf.Tensor[]) =>
    tf.tidy(() => {
      const f = (...xs: tf.Tensor[]) => meanNll(gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask, replace: Object.fromEntries(names.map((n, i) => [n, xs[i]])) }).logits, b.labels);
      const { value, grads } = tf.valueAndGrads(f)(ws);
      return [value, ...grads];
    });
  const viaBase = run(names.map((n) => m.params[n]));
  const copies = names.map((n) => tf.clone(m.params[n]));
  const viaCopies = run(copies);
  assert.ok(tf.memory().numTensors > start + 3 + viaBase.length + viaCopies.length + copies.length, "transposes were cached");
  for (let i = 0; i < viaBase.length; i++) assert.ok(maxAbsDiff(viaBase[i], viaCopies[i]) < 1e-6, `output ${i}`);
  tf.dispose([...viaBase, ...viaCopies, ...copies]);
  disposeBatch(b);
  assert.ok(tf.memory().numTensors > start, "the cached transposes live with the model");
  disposeParams(m.params);
  assert.equal(tf.memory().numTensors, start - Object.keys(m.params).length, "disposeParams frees the cached transposes too");
});

test("frozen large base weights form no weight gradient: a probe's gradient takes one product fewer per such weight, same values", async () => {
  await setup();
  const m = tinyModel(4, { n_embd: 512, n_layer: 2, n_head: 4 });
  const b = makeBatch(m.tokenizer, examples, "target", m.config.n_positions);
  const names = ["h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"];
  const N = b.inputIds.size;
  // δ of h.0's c_proj (a small probe upstream of both large weights), with the large weights frozen
  // (read from params) or offered for differentiation (replaced by themselves).
  const delta = (replace: boolean) =>
    tf.tidy(() => {
      const probe = tf.zeros([N, m.config.n_embd]);
      const f = (p: tf.Tensor) => meanNll(gptForward(m.params, m.config, b.inputIds, { attentionMask: b.attentionMask, probes: { "h.0.mlp.c_proj.weight": p }, ...(replace ? { replace: Object.fromEntries(names.map((n) => [n, m.params[n]])) } : {}) }).logits, b.labels);
      return tf.grad(f)(probe);
    });
  const matMuls = async (replace: boolean) => {
    const info = await tf.profile(() => delta(replace));
    tf.dispose(info.result as tf.Tensor);
    return info.kernels.filter((k) => k.name === "BatchMatMul" || k.name === "_FusedMatMul").length;
  };
  delta(false).dispose(); // cache the transposes first
  const [frozen, offered] = [await matMuls(false), await matMuls(true)];
  assert.equal(offered - frozen, names.length, `products: frozen ${frozen}, offered ${offered}`);
  const [a, c] = [delta(false), delta(true)];
  assert.equal(maxAbsDiff(a, c), 0, "the same δ either way");
  tf.dispose([a, c]);
  disposeBatch(b);
  disposeParams(m.params);
});

test("a trained embedding's rows and gradient are those of one-hot(ids) @ wte, bit for bit, repeated ids included", async () => {
  await setup();
  const wte = tf.randomNormal([50, 16], 0, 1, "float32", 5) as tf.Tensor2D;
  const ids = tf.tensor1d([3, 7, 3, 0, 49, 3, 7, 12, 0, 0], "int32");
  const dy = tf.randomNormal([10, 16], 0, 1, "float32", 6) as tf.Tensor2D;
  const loss = (emb: (w: tf.Tensor2D) => tf.Tensor2D) => (w: tf.Tensor) => tf.sum(tf.mul(emb(w as tf.Tensor2D), dy));
  const oneHot = (w: tf.Tensor2D) => tf.matMul(tf.cast(tf.oneHot(ids, 50), "float32") as tf.Tensor2D, w) as tf.Tensor2D;
  const [rows, rowsRef, grad, gradRef] = tf.tidy(() => [trainedEmbedding(wte, ids), oneHot(wte), tf.grad(loss((w) => trainedEmbedding(w, ids)))(wte), tf.grad(loss(oneHot))(wte)]);
  assert.deepEqual(Array.from(rows.dataSync()), Array.from(rowsRef.dataSync()));
  assert.deepEqual(Array.from(grad.dataSync()), Array.from(gradRef.dataSync()));
  assert.ok(grad.dataSync().some((v) => v !== 0));
  tf.dispose([wte, ids, dy, rows, rowsRef, grad, gradRef]);
});
