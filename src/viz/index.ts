/** Figures (plotly), tables (danfojs) and notebook read-outs. */
export { showFigure, showTable, liveFigure, curvesFigure, toDataFrame, tableHtml, tableText } from "./display"; // notebook display
export { summaryFigure, driftFigure, heatmapFigure, batchedFigure, sequentialFigure, evalFigures, markdownTable, htmlReport, type Figure } from "./plots"; // figure specs and the HTML report
export { gradientMemoryTable, compareWithGradient, editorSummary, editLrValues, numericalRank } from "./inspect"; // looking inside MEND
