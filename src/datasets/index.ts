/** Standard editing datasets (zsRE, CounterFact) as edit records, with their own metrics. */
export { type Dataset, type DatasetKind, DATASET_KINDS, loadDataset, parseDataSpec, splitRecords } from "./records"; // kind:FILE -> edit records
export { zsreRecords, zsreScores, type ZsreScores } from "./zsre"; // EasyEdit / ROME zsRE JSON; edit success, token accuracy, drawdown
export { counterfactRecords, counterfactScores, counterfactScore, type CounterfactScores } from "./counterfact"; // ROME / EasyEdit CounterFact; ES/EM, PS/PM, NS/NM, S
