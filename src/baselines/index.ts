/** The baselines the MEND paper compares with: FT and FT+KL (App. C.1), KE, ENN and the cache (Tables 4, 5, 11). */
export { fineTuneEdit, validateFineTune, DEFAULT_FT_CONFIG, type FineTuneConfig, type FineTuneResult } from "./fineTune";
export { keEdit, keDenseParts, keMaskAndOffset, keCondition, keVariables, createKe, loadKe, saveKe, disposeKe, keKind, keSizesFor, DEFAULT_KE_CONFIG, type KeConfig, type KeEditor } from "./ke"; // De Cao et al.'s Knowledge Editor
export { ennEdit, ennStepSizes, createEnn, loadEnn, saveEnn, disposeEnn, ennKind, DEFAULT_ENN_CONFIG, type EnnConfig, type EnnEditor } from "./enn"; // Editable Neural Networks, first-order
export { cacheEdit, cacheThreshold, chooseCache, compareCacheKeyings, defaultCacheKeying, describeKeying, promptKeys, CachedModel } from "./cache";
export type { CacheKeying, CacheThreshold } from "./cache"; // the caching baseline
