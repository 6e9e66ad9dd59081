/**
 * MEND, the official algorithm (Mitchell et al., ICLR 2022), in the order of the paper:
 * gradient factoring, normalisation, the editor network, the update, the edit, the meta-loss,
 * meta-training, editor folders; and the hooks through which additions plug in.
 */
export { captureFactors, disposeFactors, outerProductSum, autodiffWeightGradient, type Factors } from "./factor"; // u, δ of each edited weight (§3.1)
export { createStats, updateStats, normalizeFactors, stdOf, disposeStats, type RunningStats } from "./stats"; // running μ, σ of u and δ
export { type EditorConfig, DEFAULT_EDITOR_CONFIG, type Editor, createEditor, disposeEditor, applyEditor, applyEditorAll, netForward, editorVariables, countEditorParams, lastBlocksMlp } from "./editor"; // g_φ (Eq. 3)
export { denseUpdate, lowRankFactors, pseudoGradient, type Update, type Transformed } from "./update"; // ΔW = α Σ ũ δ̃ᵀ
export { mendEdit, disposeEdit, editedWeights, updatesOf, transformFactors, captureEditorFactors, lowRankEdits, type EditResult, type EditInfo } from "./edit"; // the edit API
export { metaLoss, metaBatchGrads, metaBatchEval, exampleMetaLoss, encodeMeta, disposeEncodedMeta, preEditLogits, DEFAULT_META_LOSS_CONFIG, type MetaLossConfig } from "./metaLoss"; // L = c_edit L_edit + c_loc L_loc
export { sampleMetaBatch, sampleMetaGroups, fixedMetaExample, fixedValGroups, recordLocality, otherRecordLocality, type MetaExample, type LocalityPicker } from "./metaExamples"; // (x_e, x'_e, x_loc) tuples
export { type EditorKind, type EditCalls, type RowUpdate, mendKind } from "./editorKind"; // what meta-training needs from an editor
export { trainEditor, validateEditor, DEFAULT_TRAIN_EDITOR_CONFIG, type TrainEditorConfig, type TrainEditorProgress, type ValidationResult } from "./train"; // the training loop
export { saveEditor, loadEditor, editorTrainingInfo } from "./editorFolder"; // editor folders
export type { EditorHooks, KeyTransform, RowSelector, LossGrouping, StepScale, UpdateRule, RuleContext, LowRankUpdate } from "./hooks"; // where additions plug in
