/**
 * Lifelong editing (our additions, docs/deviations.md): methods for long streams of sequential
 * edits (how many each keeps: docs/lifelong), built on what MEND computes (each edited layer's
 * inputs u and output gradients δ) or on plain fine-tuning, each behind the method interface
 * (eval/methods.ts):
 *
 *  - UltraEdit-style: a training-free ridge solve on u and δ with running statistics (ultraEdit.ts);
 *  - AlphaEdit-style: the same solve, projected onto the null space of preserved keys, with the
 *    earlier edits' keys in its normal equation, spread over several weights (alphaEdit.ts,
 *    keyValueEdit.ts);
 *  - LocFT-BF-style: fine-tuning one weight breadth-first over every edit so far (locFtBf.ts);
 *  - GRACE-style: no weight changes; a codebook of keys, radii and trained values on one layer
 *    that routes an input to an edit only when it lies near that edit's key (grace.ts);
 *
 * and the check that a ledger's saved states are what its edits made (ledgerState.ts).
 */
export * from "./linalg";
export * from "./keyValueEdit";
export * from "./ultraEdit";
export * from "./alphaEdit";
export * from "./locFtBf";
export * from "./ledgerState";

/** The settings of the lifelong methods. */
export interface LifelongOptions {
  /** η, maxSteps, minProb of the key-value methods (keyValueEdit.ts); AlphaEdit stops at `alphaMinProb`. */
  stepSize: number;
  maxSteps: number;
  minProb: number;
  alphaMinProb: number;
  /** AlphaEdit spreads each edit over the last this many blocks' mlp.c_proj when no weights are named. */
  alphaLayers: number;
  /** Ridge λ of UltraEdit and of AlphaEdit's normal equation. */
  ultraLambda: number;
  alphaLambda: number;
  /** AlphaEdit: μ of the soft penalty on every preserved key (0: none; alphaEdit.ts `preservedCovarianceInverse`). */
  alphaCovariance: number;
  /** AlphaEdit preserves at most this fraction of the edited weight's input size in keys. */
  preserveFraction: number;
  /** LocFT-BF: Adam's lr, mini-batch size, epochs per edit call at most (official fine-tune.py: 5e-4, 100, 25 on 7B models). */
  ftLr: number;
  ftBatchSize: number;
  ftMaxEpochs: number;
  /** GRACE: ε_init of a new key, Adam steps and lr of a value (official gpt2-xl: 1.0, 200, 1.0). */
  graceEps: number;
  graceSteps: number;
  graceLr: number;
}

/** The lifelong methods' defaults (chosen on the facts world's 100-edit stream at seed 0, checked at seeds 1 and 2: docs/research-log.md). */
export const DEFAULT_LIFELONG: Readonly<LifelongOptions> = Object.freeze({
  stepSize: 2,
  maxSteps: 12,
  minProb: 0.5,
  alphaMinProb: 0.9,
  alphaLayers: 4,
  ultraLambda: 1,
  alphaLambda: 1,
  alphaCovariance: 1000,
  preserveFraction: 0.5,
  ftLr: 1e-3,
  ftBatchSize: 16,
  ftMaxEpochs: 25,
  graceEps: 1.0,
  graceSteps: 200,
  graceLr: 1.0,
});

/**
 * The weights a lifelong method edits by default: the MLP output projections of the last `layers`
 * blocks (at most all of them), lowest first. UltraEdit and LocFT-BF edit the last block's (on the
 * facts world its single edits are the smallest), AlphaEdit spreads over `alphaLayers` blocks
 * (docs/research-log.md).
 */
export function defaultLifelongWeights(nLayer: number, layers = 1): string[] {
  const k = Math.max(1, Math.min(nLayer, layers));
  return Array.from({ length: k }, (_, i) => `h.${nLayer - k + i}.mlp.c_proj.weight`);
}
export * from "./grace";
