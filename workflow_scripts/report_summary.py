"""Rule report_summary: the summary table (relative task changes, mean KL) to Parquet, CSV and HTML."""

from prunescope.report.summary import build_summary
from prunescope.runlog import setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
sources = {view: list(snakemake.input.get(view, [])) for view in ("metrics", "tasks")}
frame = build_summary(snakemake.input.sql, sources, dict(snakemake.output.items()), snakemake.params.query)
log.info("summary: %d variants -> %s", len(frame), snakemake.output.parquet)
