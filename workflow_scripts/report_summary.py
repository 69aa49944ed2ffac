"""Rule report_summary: the summary tables (per variant, per task, regime per layer) and the findings."""

from prunescope.report.joblog import setup_log
from prunescope.report.summary import QUERIES, build_summary

log = setup_log(snakemake.log[0], snakemake.rule)
sources = {view: list(snakemake.input.get(view, [])) for view in ("metrics", "tasks", "task_samples")}
queries = {name: snakemake.input[f"sql_{name}"] for name in QUERIES}
summary = build_summary(queries, sources, dict(snakemake.output.items()), snakemake.params.query)
log.info("summary: %d variants, %d task rows, %d findings -> %s", len(summary.variants), len(summary.tasks),
         len(summary.findings), snakemake.output.parquet)
