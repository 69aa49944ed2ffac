"""Rules report_*: one report figure — its SQL over the input tables -> CSV, PNG and SVG."""

from prunescope.report.figures import build_figure
from prunescope.report.joblog import setup_log

log = setup_log(snakemake.log[0], snakemake.rule)
sources = {view: list(snakemake.input.get(view, [])) for view in ("metrics", "tasks", "task_samples")}
paper = {view: snakemake.input[view] for view in ("paper_fig1", "paper_fig4") if view in snakemake.input.keys()}
outputs = dict(snakemake.output.items())
frame = build_figure(snakemake.params.figure, snakemake.input.sql, sources, outputs, snakemake.params.variants,
                     snakemake.params.query, paper)
log.info("%s: %d rows from %d tables -> %s", snakemake.params.figure, len(frame),
         sum(len(files) for files in sources.values()), ", ".join(outputs.values()))
