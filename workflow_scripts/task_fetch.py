"""Rule task_fetch (local): download one hub task's datasets into the shared cache; write its manifest."""

from prunescope.io import write_json
from prunescope.runlog import setup_job
from prunescope.tasks.fetch import fetch_task

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
manifest = fetch_task(snakemake.wildcards.task, snakemake.params.kind)
write_json(manifest, snakemake.output[0])
for leaf, entry in manifest["leaves"].items():
    log.info("%s: %s %s %s", leaf, entry["dataset_path"], entry["dataset_name"] or "", entry["splits"])
log.info("cache: %s", manifest["datasets_cache"])
