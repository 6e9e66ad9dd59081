/**
 * Trainable variables to and from a safetensors file, by checkpoint name: the files of the
 * learned editors beside MEND (KE, ENN). Loading checks every name and shape and refuses NaN/Inf.
 */
import * as tf from "@tensorflow/tfjs";
import { decodeSafetensors, encodeSafetensors, RawTensor } from "../model/safetensors";

/** The variables as one safetensors file (F32). */
export function variablesSafetensors(vars: Readonly<Record<string, tf.Tensor>>, format: string): Buffer {
  const raw: Record<string, RawTensor> = {};
  for (const [k, t] of Object.entries(vars)) raw[k] = { dtype: "F32", shape: t.shape, data: t.dataSync() as Float32Array };
  return encodeSafetensors(raw, { format });
}

/** Assign every variable its tensor from `buf`; a missing, extra or misshapen tensor is an error naming it. */
export function assignVariables(vars: Readonly<Record<string, tf.Variable>>, buf: Buffer | undefined, file: string): void {
  if (!buf) throw new Error(`${file} is missing`);
  const { tensors } = decodeSafetensors(buf, file);
  const missing = Object.keys(vars).filter((k) => !tensors[k]);
  const extra = Object.keys(tensors).filter((k) => !(k in vars));
  if (missing.length) throw new Error(`${file}: missing tensor(s) ${missing.slice(0, 5).join(", ")}`);
  if (extra.length) throw new Error(`${file}: unexpected tensor(s) ${extra.slice(0, 5).join(", ")}`);
  for (const [k, v] of Object.entries(vars)) {
    const t = tensors[k];
    if (t.shape.join("x") !== v.shape.join("x")) throw new Error(`${file}: "${k}" has shape [${t.shape}], expected [${v.shape}]`);
    if (t.data.some((x) => !Number.isFinite(x))) throw new Error(`${file}: "${k}" contains NaN or Inf`);
    const x = tf.tensor(t.data, t.shape, "float32");
    v.assign(x);
    x.dispose();
  }
}
