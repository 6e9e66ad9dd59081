/** The base model: GPT-2 as a pure function, its folders, tokenizer, losses and backend. */
export { initBackend, describeBackend, backendChoice, useFastMatMulGradient, type BackendChoice } from "./backend"; // pick tfjs-node-gpu, tfjs-node, wasm or cpu
export { useWasmKernels, wasmKernelsActive } from "./wasmKernels"; // wasm data-movement kernels that copy less
export { type GPT2Config, DEFAULT_GPT2_CONFIG, validateConfig } from "./config"; // HF GPT2Config keys
export { type Params, type ForwardOptions, type ForwardResult, type LowRankTerm, gptForward, initGPT, paramShapes, disposeParams, countParams, paramsFingerprint, gelu, geluTanh, useGeluForm } from "./gpt"; // the pure forward
export { meanNll, tokenNll, meanKl, tokenKl, labelMask } from "./loss"; // token losses on shifted labels
export { type Model, loadModel, loadTokenizer, saveModel, modelFiles } from "./modelFolder"; // config.json + model.safetensors + the tokenizer files; Hugging Face GPT-2 folders too
export { writeFileDurable, removeStaleTemps, WriteError, type FileOps } from "./durable"; // durable file writes
export { writeFolder, verifyFolder, readFolderFiles, recoverFolder, withFolderLock, readManifest, type Manifest } from "./checkpointFolder"; // folders as one unit
export { readSafetensors, writeSafetensors, encodeSafetensors, decodeSafetensors, SafetensorsFile, type RawTensor } from "./safetensors"; // the safetensors format
export { type Tokenizer, continuation } from "./tokenizer"; // what the model needs from a tokenizer
export { WordTokenizer, splitWords, UnknownWordError, SPECIAL_TOKENS } from "./wordTokenizer"; // the facts world's word tokenizer
export { BpeTokenizer, gpt2TokenizerFiles, END_OF_TEXT } from "./bpeTokenizer"; // GPT-2 byte-level BPE (tokenizers.js)
export { nextTokenTopK, nextTokenProbs, greedyContinuation, scoreTargets, corpusNll, klPerExample, rowsPerPass, type TargetScore, type TopK } from "./score"; // predictions and teacher-forced scores of any model
export { type LanguageModel, type EditedModel, type MethodState } from "./languageModel"; // what evaluators read: logits; a model after edits
export { type ModelView, ParamsModel, paramsModel, applyUpdates, withWeights, replaceModel } from "./paramsModel"; // parameter-backed models
export { type ModelUpdate, type WeightDelta, type LowRankDelta, type DenseDelta, isLowRank, denseDelta, updatedWeights, updateTensors, disposeUpdate } from "./weightUpdate"; // weight updates as values
export { type TextExample, type Batch, makeBatch, encodeExamples, toBatch, disposeBatch } from "./batch"; // text -> padded, shifted tensors
export { Rng } from "./rng"; // mulberry32 with a saveable state
export { lastPositionInputs } from "./layerInputs"; // layer inputs at the answer position
export { EditLedger, hasLedger, readLedger, saveLedgerModel, LEDGER_FILES, type LedgerEntry } from "./editLedger"; // the record of every edit of a model: undo, save, check
