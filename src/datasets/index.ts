/** Edit records, and the standard editing datasets (zsRE, CounterFact) as edit records with their own metrics. */
export { type EditRecord, type LocalityExample, type LocalityClass, type Split, LOCALITY_CLASSES, factKey, distinctFacts, sharesOldAnswer } from "./editRecord"; // one editing case
export { type Dataset, type DatasetKind, DATASET_KINDS, loadDataset, parseDataSpec, splitRecords } from "./records"; // kind:FILE -> edit records
export { zsreRecords, zsreScores, type ZsreScores } from "./zsre"; // EasyEdit / ROME zsRE JSON; edit success, token accuracy, drawdown
export { counterfactRecords, counterfactScores, counterfactScore, type CounterfactScores } from "./counterfact"; // ROME / EasyEdit CounterFact; ES/EM, PS/PM, NS/NM, S
