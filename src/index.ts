/** mend-ts: MEND (Mitchell et al., ICLR 2022) in TypeScript on TensorFlow.js. Re-exports the library. */
export * from "./backend";
export * from "./config";
export * from "./gpt";
export * from "./loss";
export * from "./tokenizer";
export * from "./safetensors";
export * from "./params";
export * from "./rng";
export * from "./batch";
export * from "./score";
export * from "./world";
export * from "./progress";
export * from "./optimizerState";
export * from "./pretrain";
