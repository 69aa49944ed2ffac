"""The report: DuckDB queries over the pipeline's Parquet outputs, Altair figures that redraw the paper's,
a summary table, and one offline HTML page.

- :mod:`prunescope.report.sources`: the named views every query reads (``metrics``, ``tasks``,
  ``task_scores``, ``variants``, ``paper_fig1``, ``paper_fig4``) and :func:`~prunescope.report.sources.run_query`;
- :mod:`prunescope.report.catalog`: which figures exist, what they read, when they can be drawn;
- :mod:`prunescope.report.figures`: query -> CSV -> chart -> PNG / SVG for one figure
  (chart builders in :mod:`~prunescope.report.charts_layers` and :mod:`~prunescope.report.charts_outputs`);
- :mod:`prunescope.report.summary`: the summary table; :mod:`prunescope.report.page`: the HTML page.

The SQL of each figure lives in ``reports/<figure>.sql`` and its caption in ``reports/<figure>.rst``.
"""
