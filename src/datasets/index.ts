/** Edit records, and the standard editing datasets (zsRE, CounterFact) as edit records (their metrics: src/eval). */
export { type EditRecord, type LocalityExample, type LocalityClass, type Split, LOCALITY_CLASSES, factKey, distinctFacts, sharesOldAnswer } from "./editRecord"; // one editing case
export { type Dataset, type DatasetKind, DATASET_KINDS, loadDataset, parseDataSpec, splitRecords } from "./records"; // kind:FILE -> edit records
export { zsreRecords } from "./zsre"; // EasyEdit / ROME zsRE JSON
export { counterfactRecords } from "./counterfact"; // ROME / EasyEdit CounterFact
