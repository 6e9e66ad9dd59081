/** Figures (plotly), tables (danfojs) and notebook read-outs. */
export { showFigure, showTable, liveFigure, toDataFrame, tableHtml, tableText } from "./display"; // notebook display
export { summaryFigure, driftFigure, heatmapFigure, batchedFigure, sequentialFigure, evalFigures, markdownTable, htmlReport, type Figure } from "./plots"; // figure specs and the HTML report
export { gradientMemoryTable, compareWithGradient, editorSummary, editLrValues, numericalRank, editorSizeTable, factorsByToken, topMovers } from "./inspect"; // looking inside MEND
export { panelsFigure, barsFigure, sweepFigure, sliderBarsFigure, seedRangeFigure, causalTraceFigure, averageTraceFigure, smooth } from "./figures"; // the tutorial's figures
export { notebookSession, startNotebook, NotebookSession, NotebookError } from "./notebook"; // the notebooks' session
