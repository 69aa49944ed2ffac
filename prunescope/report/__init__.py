"""The report: DuckDB queries over the pipeline's Parquet outputs, Altair figures that redraw the paper's (and
a few beyond it), a summary with 95 % intervals, and one offline HTML page.

- :mod:`prunescope.report.catalog`: the one figure registry (names, titles, inputs, needs, builders named by
  dotted strings, so the rules import it without Altair);
- :mod:`prunescope.report.inputs`: the report temperature, the configuration's needs and which tables feed
  which job, from typed records of the upstream outputs;
- :mod:`prunescope.report.sources`: the named views every query reads and :func:`~prunescope.report.sources.run_query`;
  :mod:`~prunescope.report.task_views`: task scores, per-item values, intervals and paired changes;
- :mod:`prunescope.report.intervals`: the seeded bootstrap (over prompts, over items, paired, stratified),
  also callable from SQL as ``ci95`` / ``ci95_strata``;
- :mod:`prunescope.report.regime`: where the second-order theory holds (ratios binned by the spread of Δz/T);
- :mod:`prunescope.report.figures`: query -> (derive) -> CSV -> chart -> PNG / SVG for one figure (chart
  builders in :mod:`~prunescope.report.charts_layers`, :mod:`~prunescope.report.charts_outputs` and
  :mod:`~prunescope.report.charts_theory`);
- :mod:`prunescope.report.summary` and :mod:`~prunescope.report.findings`: the summary tables and the
  findings sentences; :mod:`prunescope.report.page`: the HTML page.

The SQL of each figure lives in ``reports/<figure>.sql`` and its caption in ``reports/<figure>.rst``.
"""
