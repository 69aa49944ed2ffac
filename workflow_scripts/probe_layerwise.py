"""Rules probe_layerwise_drop / probe_layerwise_pruned: the layer-wise shared-context probe, every probe set."""

import time

from prunescope.probes.jobs import ProbeJob, load_for_analysis
from prunescope.probes.layerwise import layerwise_probe
from prunescope.runlog import log_probe_throughput, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
# The batch size changes no result (tests/test_probes_batch.py): read from the config, not a param, so
# changing it reruns nothing.
requested_batch = snakemake.config["probes"]["batch_size"]
variant_name = snakemake.params.variant
dense, _ = load_for_analysis(snakemake.input.model, "dense", None, snakemake.params.device)
variant = None
if variant_name != "dense":  # pruned mode: the variant's sublayers on the dense model's inputs
    variant, _ = load_for_analysis(snakemake.input.model, variant_name, snakemake.input.variant, snakemake.params.device)
for probe_set, prompt_file, path in zip(snakemake.params.sets, snakemake.input.prompts, snakemake.output):
    job = ProbeJob(prompt_file, snakemake.params.decoding, snakemake.params.vector_dtype)
    batch_size = job.batch_size(requested_batch, "layerwise-drop" if variant is None else "layerwise-pruned",
                                snakemake.input.model, snakemake.params.device, dict(snakemake.resources.items()))
    log.info("%s: batch size %d (probes.batch_size: %s)", probe_set, batch_size, requested_batch)
    start = time.perf_counter()
    records = layerwise_probe(dense, job.prompts, job.decoding, variant=variant, batch_size=batch_size)
    log_probe_throughput(log, "layerwise", probe_set, job.prompts, records, time.perf_counter() - start)
    job.write(records, path, model=snakemake.wildcards.model, variant=variant_name, probe="layerwise", probe_set=probe_set,
              batch_size=batch_size)
    log.info("%s: %d rows (%s mode) -> %s", probe_set, len(records), "drop" if variant is None else "pruned", path)
