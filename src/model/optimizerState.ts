/**
 * Saving and restoring a tfjs optimizer's slots (Adam's moments and step count) so training can
 * resume exactly. tfjs matches slots to variables by position, so the variable order used for
 * `applyGradients` must be the same before and after (both trainers keep a fixed name order).
 */
import * as tf from "@tensorflow/tfjs";
import { encodeSafetensors, RawTensor, readSafetensors } from "./safetensors";

/** The optimizer's slots as a safetensors file's bytes (written into a run's `last` folder). */
export async function optimizerStateBytes(opt: tf.Optimizer): Promise<Buffer> {
  const weights = await opt.getWeights();
  const raw: Record<string, RawTensor> = {};
  const names: string[] = [];
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i];
    const key = `slot.${String(i).padStart(5, "0")}`;
    names.push(w.name);
    raw[key] = { dtype: "F32", shape: w.tensor.shape, data: Float32Array.from(await w.tensor.data()) };
  }
  // getWeights() returns the optimizer's own slot variables plus a fresh "iter" scalar: free only that one.
  for (const w of weights) if (w.name === "iter") w.tensor.dispose();
  return encodeSafetensors(raw, { names: JSON.stringify(names), optimizer: opt.getClassName() });
}

export async function loadOptimizerState(file: string, opt: tf.Optimizer): Promise<void> {
  const { tensors, metadata } = readSafetensors(file);
  if (metadata.optimizer !== opt.getClassName()) throw new Error(`${file}: optimizer state is for ${metadata.optimizer}, not ${opt.getClassName()}`);
  const names = JSON.parse(metadata.names ?? "[]") as string[];
  const keys = Object.keys(tensors).sort();
  if (keys.length !== names.length) throw new Error(`${file}: ${keys.length} slots but ${names.length} names`);
  const weights = keys.map((k, i) => ({ name: names[i], tensor: tf.tensor(tensors[k].data, tensors[k].shape, "float32") }));
  await opt.setWeights(weights);
  for (const w of weights) w.tensor.dispose(); // setWeights copies into its own variables
}
