/** The fine-tuning baselines FT and FT+KL (MEND App. C.1). */
export { fineTuneEdit, validateFineTune, DEFAULT_FT_CONFIG, type FineTuneConfig, type FineTuneResult } from "./fineTune";
