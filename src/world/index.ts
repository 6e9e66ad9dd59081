/** The facts world (subjects, relations, templates, edit records), batching and the seeded RNG. */
export { World, type EditRecord, type LocalityExample, type LocalityClass, LOCALITY_CLASSES, type Fact, type TemplateGroup, factKey, distinctFacts, sharesOldAnswer, trainingSplitProbes, trainingSplitPrompts } from "./world";
export { type TextExample, type Batch, makeBatch, encodeExamples, toBatch, disposeBatch } from "./batch"; // text -> padded, shifted tensors
export { Rng } from "./rng"; // mulberry32 with a saveable state
