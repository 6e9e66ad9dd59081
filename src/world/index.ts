/** The facts world: subjects, relations, templates, its corpus and its edit records. */
export { World, type Fact, type TemplateGroup, trainingSplitProbes, trainingSplitPrompts } from "./world";
export { pretrain, DEFAULT_PRETRAIN_CONFIG, factAccuracy, type PretrainConfig, type PretrainProgress } from "./pretrain"; // pretraining the base model on the facts world
