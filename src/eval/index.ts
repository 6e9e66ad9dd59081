/** Evaluation: the method registry, metrics, probes, the evaluation runs and the target checks. */
export { buildMethods, mendMethod, fineTuneMethod, keMethod, ennMethod, cacheMethod, disposeMethodEdit, paramsOf, METHODS, type EditMethod, type MethodEdit, type MethodContext } from "./methods"; // methods behind one interface, one registry
export { editSuccess, tokenAccuracy, unchanged, unchangedTokenFraction, accuracyDrawdown, perplexity, perplexityDrawdown, mean, meanBy } from "./metrics"; // the paper's and EasyEdit's metrics
export { evaluateMethods, worldMethodContext, DEFAULT_EVAL_CONFIG, type EvalConfig, type EvalResult, type MethodSummary } from "./evaluate"; // single, batched, sequential
export { probesFor, runProbes, formatProbeTable, probeTableRows, firstWord, type Probe, type ProbeResult } from "./report"; // before/after probe tables
export { targetChecks } from "./targets"; // the project's measured targets
export { evaluateDataset, formatDatasetTable, type DatasetEvalResult } from "./datasetEval"; // zsRE / CounterFact single edits with their metrics
export { zsreScores, type ZsreScores } from "./zsreMetrics"; // the official, EasyEdit's and ROME's zsRE metrics
export { counterfactScores, counterfactScore, type CounterfactScores } from "./counterfactMetrics"; // ROME's ES/EM, PS/PM, NS/NM, S
export { causalTrace, averageTrace, subjectNoiseLevel, TRACE_KINDS, TOKEN_GROUPS, type CausalTrace, type AverageTrace, type TraceKind } from "./causalTrace"; // where a model recalls a fact (ROME §2.1)
export { readPaperResults, runsOf, seedValues, intervalRows, meanValidationCurve, batchedPoint, meanInterval, formatInterval, paperTables, PAPER_NUMBERS, PAPER_BATCH_SIZES, type PaperResults, type RunEval } from "./paperResults"; // the paper in miniature (docs/paper)
export { worldStream, datasetStream, runLifelong, type LifelongStream, type LifelongCurve, type LifelongPoint, type LifelongProbe } from "./lifelong"; // the lifelong benchmark
export { lifelongTable, lifelongTargets, lifelongFigures, readLifelongResults, pointAt, type LifelongResult } from "./lifelongReport"; // its table, targets, figures
export { replayWithout, diffAnswers, type AnswerChange } from "./ledgerOps"; // replaying an edit ledger, diffing two models
