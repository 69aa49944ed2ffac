"""Rules probe_generation_dense / probe_generation: the dense reference trajectory, or a variant's
free-running and teacher-forced decoding against it, for every probe set."""

import time

from prunescope.probes.generation import GENERATION_MODES, dense_trajectories, reference_records, variant_records
from prunescope.probes.jobs import ProbeJob, load_for_analysis
from prunescope.probes.prompt_sets import read_trajectories
from prunescope.runlog import log_probe_throughput, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
# The batch size changes no result (tests/test_probes_batch.py): read from the config, not a param, so
# changing it reruns nothing.
requested_batch = snakemake.config["probes"]["batch_size"]
variant_name = snakemake.params.variant
model, _ = load_for_analysis(snakemake.input.model, variant_name, snakemake.input.get("variant"), snakemake.params.device)
references = snakemake.input.get("reference") or [None] * len(snakemake.output)
for probe_set, prompt_file, reference_file, path in zip(snakemake.params.sets, snakemake.input.prompts, references,
                                                       snakemake.output):
    job = ProbeJob(prompt_file, snakemake.params.decoding, snakemake.params.vector_dtype)
    reference = None if variant_name == "dense" else read_trajectories(reference_file)
    batch_size = job.batch_size(requested_batch, "generation", snakemake.input.model,
                                snakemake.params.device, dict(snakemake.resources.items()))
    log.info("%s: batch size %d (probes.batch_size: %s)", probe_set, batch_size, requested_batch)
    start = time.perf_counter()
    if variant_name == "dense":
        records = reference_records(dense_trajectories(model, job.prompts, job.decoding, batch_size=batch_size))
    else:
        records = variant_records(model, job.prompts, job.decoding, reference, GENERATION_MODES, batch_size=batch_size)
    log_probe_throughput(log, "generation", probe_set, job.prompts, records, time.perf_counter() - start)
    job.write(records, path, model=snakemake.wildcards.model, variant=variant_name, probe="generation",
              probe_set=probe_set, batch_size=batch_size)
    log.info("%s: %d rows -> %s", probe_set, len(records), path)
