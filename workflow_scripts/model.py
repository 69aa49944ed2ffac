"""Rule model: resolve one config['models'] entry to resources/models/{model}/."""

from prunescope.models import resolve_model
from prunescope.runlog import setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
log.info("resolving model %s: %s", snakemake.wildcards.model, snakemake.params.entry)
resolve_model(dict(snakemake.params.entry), snakemake.output[0])
log.info("wrote %s", snakemake.output[0])
