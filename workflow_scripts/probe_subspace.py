"""Rules probe_subspace_dense / probe_subspace: the dense final states at the answer position of
multiple-choice prompts (the reference, computed once), or a variant's beside them."""

import time
from collections import Counter

from prunescope.probes.jobs import ProbeJob, load_for_analysis
from prunescope.probes.prompt_sets import load_prompt_set
from prunescope.probes.subspace import read_reference, subspace_reference_records, subspace_records
from prunescope.runlog import log_probe_throughput, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
# The batch size changes no result (tests/test_probes_batch.py): read from the config, not a param, so
# changing it reruns nothing.
requested_batch = snakemake.config["probes"]["batch_size"]
variant_name = snakemake.params.variant
model, _ = load_for_analysis(snakemake.input.model, variant_name, snakemake.input.get("variant"),
                             snakemake.params.device)
references = snakemake.input.get("reference") or [None] * len(snakemake.output)
for probe_set, prompt_file, reference_file, path in zip(snakemake.params.sets, snakemake.input.prompts, references,
                                                       snakemake.output):
    job = ProbeJob(prompt_file, None, snakemake.params.vector_dtype)
    # Each prompt's option ids were read off its rendered text when the prompt file was written.
    option_ids, option_forms = load_prompt_set(prompt_file).subspace_options()
    batch_size = job.batch_size(requested_batch, "subspace", snakemake.input.model,
                                snakemake.params.device, dict(snakemake.resources.items()))
    log.info("%s: batch size %d (probes.batch_size: %s)", probe_set, batch_size, requested_batch)
    start = time.perf_counter()
    if variant_name == "dense":
        records = subspace_reference_records(model, job.prompts, option_ids, job.answers, batch_size=batch_size,
                                    option_forms=option_forms)
    else:
        records = subspace_records(read_reference(reference_file), model, job.prompts, option_ids, job.answers,
                                   batch_size=batch_size, option_forms=option_forms)
    log_probe_throughput(log, "subspace", probe_set, job.prompts, records, time.perf_counter() - start)
    job.write(records, path, model=snakemake.wildcards.model, variant=variant_name, probe="subspace",
              probe_set=probe_set, batch_size=batch_size)
    forms = Counter(option_forms.values())
    log.info("%s: %d rows, option-token forms %s -> %s", probe_set, len(records), dict(forms), path)
