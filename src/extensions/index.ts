/** Our additions to MEND, each plugged in through a hook of src/mend/hooks.ts; measured in docs/research-log.md. */
export { calibration, calibrateSteps, calibrationOf, rightAtScales, smallestRightSteps, DEFAULT_CALIBRATION, BATCH_EDITOR_CALIBRATION, type StepCalibration, type CalibrationResult } from "./calibrate"; // edit-time step calibration (a StepScale)
export { loadEditor, extendEditor, extensionsOf, withKeys, attachExtensions, validateExtensions, type EditorExtensions } from "./editorExtensions"; // editors with extensions and their folders
export { keyPreconditioners, keySecondMoments, decorrelatedKeys, preconditionedKeys, ridgeInverse } from "./keyPrecond"; // key preconditioning, batch decorrelation (a KeyTransform)
export { preservedEdit, buildPreservationSet, disposePreservationSet, BATCH_EDITOR_PRESERVATION, type Preservation, type PreservationSet } from "./preserve"; // edit-time preservation
export { localityPicker, sameAnswerPool, type LocalitySampling } from "./localitySampling"; // locality texts for meta-training (a LocalityPicker)
export { targetRows } from "./targetRows"; // target rows (a RowSelector)
export { prepareTraining, OFFICIAL_RECIPE, type TrainingRecipe } from "./trainingRecipe"; // meta-training with extensions
