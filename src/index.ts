/**
 * mend-ts: MEND (Mitchell et al., ICLR 2022) in TypeScript on TensorFlow.js, by namespace:
 *
 *   model       the base GPT-2 (pure forward, folders, tokenizer, backend)
 *   world       the facts world, batching, seeded RNG
 *   datasets    zsRE and CounterFact as edit records, with their metrics
 *   mend        the official algorithm (factoring, editor, update, edit, meta-loss, training)
 *   extensions  our additions, plugged into `mend` through its hooks
 *   baselines   FT and FT+KL, KE, ENN, the cache
 *   lifelong    our lifelong methods on u and δ: UltraEdit-, AlphaEdit- and LocFT-BF-style
 *   evaluation  methods, metrics, evaluation runs (the folder src/eval; `eval` is reserved in JS)
 *   viz         figures, tables, notebook display
 */
export * as model from "./model";
export * as world from "./world";
export * as datasets from "./datasets";
export * as mend from "./mend";
export * as extensions from "./extensions";
export * as baselines from "./baselines";
export * as lifelong from "./lifelong";
export * as evaluation from "./eval";
export * as viz from "./viz";
