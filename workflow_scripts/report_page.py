"""Rule report_page: the single offline HTML page with every figure, its caption and the summary tables."""

import json

import pandas as pd

from prunescope.report.joblog import setup_log
from prunescope.report.page import PageFigure, read_table, write_page

log = setup_log(snakemake.log[0], snakemake.rule)
figures = [
    PageFigure(name, title, svg, caption)
    for (name, title), svg, caption in zip(snakemake.params.figures, snakemake.input.svg, snakemake.input.captions)
]
summary = pd.read_parquet(snakemake.input.summary)
with open(snakemake.input.summary_caption, encoding="utf-8") as handle:
    summary_caption = handle.read()
with open(snakemake.input.findings, encoding="utf-8") as handle:
    findings = json.load(handle)["lines"]
tasks, regime = read_table(snakemake.input.tasks), read_table(snakemake.input.regime)
write_page(snakemake.output[0], figures, summary, summary_caption, snakemake.params.skipped, snakemake.params.settings,
           tasks=tasks, findings=findings, regime=regime)
log.info("page with %d figures (%d not drawn) -> %s", len(figures), len(snakemake.params.skipped), snakemake.output[0])
