/**
 * Layer inputs at the position that predicts a prompt's answer: for each prompt, the input u of the
 * named linear weights at the prompt's last token, and the model's argmax there. Key-based methods
 * read them as the keys of known facts (key preconditioning, edit-time preservation, null-space
 * projections). Shapes: n prompts, d_in of a weight.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeBatch, encodeExamples, toBatch } from "./batch";
import { gptForward } from "./gpt";
import { ModelView } from "./paramsModel";

/**
 * The named weights' inputs at the last position of each prompt (the position that predicts the
 * answer) and the model's argmax there. @returns inputs name -> [n, d_in] (caller owns), answers [n]
 */
export function lastPositionInputs(model: ModelView, names: readonly string[], prompts: readonly string[], batchSize = 256): { inputs: Record<string, tf.Tensor2D>; answers: Int32Array } {
  if (prompts.length === 0) throw new Error("no prompts to measure the inputs on");
  for (const n of names) {
    const w = model.params[n];
    if (!w || w.rank !== 2) throw new Error(`"${n}" is not a 2-D weight of the base model`);
  }
  const chunks: tf.Tensor2D[][] = names.map(() => []);
  const answers = new Int32Array(prompts.length);
  for (let s = 0; s < prompts.length; s += batchSize) {
    const a = encodeExamples(model.tokenizer, prompts.slice(s, s + batchSize).map((p) => ({ prompt: p, target: "" })), "none", model.config.n_positions);
    const b = toBatch(a);
    const T = b.inputIds.shape[1];
    const [keys, argmax] = tf.tidy(() => {
      const rows = tf.tensor1d(a.lastPosition.map((t, i) => i * T + t), "int32");
      const out = gptForward(model.params, model.config, b.inputIds, { attentionMask: b.attentionMask, capture: names });
      const V = out.logits.shape[2];
      const last = tf.gather(tf.reshape(out.logits, [-1, V]), rows); // [b, V]
      return [names.map((n) => tf.gather(out.inputs[n], rows) as tf.Tensor2D), tf.argMax(last, 1)] as const;
    });
    disposeBatch(b);
    answers.set(argmax.dataSync(), s);
    argmax.dispose();
    keys.forEach((k, i) => chunks[i].push(k));
  }
  const inputs = Object.fromEntries(names.map((n, i) => {
    const x = chunks[i].length === 1 ? chunks[i][0] : (tf.concat(chunks[i]) as tf.Tensor2D);
    if (chunks[i].length > 1) tf.dispose(chunks[i]);
    return [n, x];
  }));
  return { inputs, answers };
}
