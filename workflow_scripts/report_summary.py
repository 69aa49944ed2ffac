"""Rule report_summary: the summary table (relative task changes, mean KL) to Parquet, CSV and HTML."""

from prunescope.report.summary import build_summary
from prunescope.report.joblog import setup_log

log = setup_log(snakemake.log[0], snakemake.rule)
sources = {view: list(snakemake.input.get(view, [])) for view in ("metrics", "tasks")}
frame = build_summary(snakemake.input.sql, sources, dict(snakemake.output.items()), snakemake.params.query)
log.info("summary: %d variants -> %s", len(frame), snakemake.output.parquet)
