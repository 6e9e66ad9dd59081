/**
 * GPT-2 model configuration, with the Hugging Face `GPT2Config` key names so that `config.json`
 * in a model folder reads like one written by `transformers`.
 */

export interface GPT2Config {
  model_type: "gpt2";
  vocab_size: number;
  /** Maximum context length (learned position embeddings). */
  n_positions: number;
  /** Model width C. */
  n_embd: number;
  n_layer: number;
  n_head: number;
  layer_norm_epsilon: number;
  /** Std of the normal initialiser (HF default 0.02). */
  initializer_range: number;
}

/** The toy model shipped in checkpoints/base (vocab_size is set from the tokenizer). */
export const DEFAULT_GPT2_CONFIG: Readonly<GPT2Config> = Object.freeze({
  model_type: "gpt2",
  vocab_size: 0,
  n_positions: 32,
  n_embd: 128,
  n_layer: 4,
  n_head: 4,
  layer_norm_epsilon: 1e-5,
  initializer_range: 0.02,
});

/** Check a config for values the model cannot run with; throws with the offending key. */
export function validateConfig(c: GPT2Config): GPT2Config {
  if (!c || typeof c !== "object" || Array.isArray(c)) throw new Error(`config.json: not an object of GPT-2 settings ({"vocab_size": ..., "n_embd": ...}), got ${JSON.stringify(c)?.slice(0, 60)}`);
  const ints: (keyof GPT2Config)[] = ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head"];
  for (const k of ints) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      throw new Error(`config.json: "${k}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  if (c.n_embd % c.n_head !== 0) throw new Error(`config.json: n_embd (${c.n_embd}) is not divisible by n_head (${c.n_head})`);
  if (c.model_type !== "gpt2") throw new Error(`config.json: model_type must be "gpt2", got ${JSON.stringify(c.model_type)}`);
  // An epsilon above 0.01 is no epsilon: it would rescale every layer norm (GPT-2's is 1e-5).
  const eps = c.layer_norm_epsilon;
  if (typeof eps !== "number" || !(eps > 0 && eps <= 0.01)) throw new Error(`config.json: layer_norm_epsilon must be a small positive number (at most 0.01; GPT-2's is 1e-5), got ${JSON.stringify(eps)}`);
  // Keys of a Hugging Face GPT2Config that change the computation, checked when present.
  const hf = c as unknown as Record<string, unknown>;
  const act = hf.activation_function;
  if (act !== undefined && act !== "gelu_new" && act !== "gelu_pytorch_tanh") throw new Error(`config.json: activation_function ${JSON.stringify(act)} is not supported (GPT-2's tanh GELU: "gelu_new")`);
  if (hf.tie_word_embeddings === false) throw new Error("config.json: tie_word_embeddings is false; this GPT-2 ties the output head to wte");
  if (hf.n_inner !== undefined && hf.n_inner !== null && hf.n_inner !== 4 * c.n_embd) throw new Error(`config.json: n_inner ${JSON.stringify(hf.n_inner)} is not 4 · n_embd (${4 * c.n_embd})`);
  // Attention variants this forward does not implement (HF defaults: true, false, false, false).
  if (hf.scale_attn_weights === false) throw new Error("config.json: scale_attn_weights is false (attention without the 1/sqrt(head size) scale) is not supported");
  if (hf.scale_attn_by_inverse_layer_idx === true) throw new Error("config.json: scale_attn_by_inverse_layer_idx is true (attention scaled by 1/(layer + 1), as in Mistral's GPT-2 runs) is not supported");
  if (hf.reorder_and_upcast_attn === true) throw new Error("config.json: reorder_and_upcast_attn is true (the attention reordered for half precision) is not supported");
  if (hf.add_cross_attention === true) throw new Error("config.json: add_cross_attention is true (a GPT-2 decoder with cross-attention) is not supported");
  return c;
}
