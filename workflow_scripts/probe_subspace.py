"""Rule probe_subspace: dense and variant final states at the answer position of multiple-choice prompts."""

import time

from prunescope.probes.jobs import ProbeJob, load_for_analysis
from prunescope.probes.subspace import option_token_ids, subspace_records
from prunescope.runlog import log_probe_throughput, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
dense, tokenizer = load_for_analysis(snakemake.input.model, "dense", None, snakemake.params.device)
variant, _ = load_for_analysis(snakemake.input.model, snakemake.params.variant, snakemake.input.variant,
                               snakemake.params.device)
option_ids, form = option_token_ids(tokenizer)
for probe_set, prompt_file, path in zip(snakemake.params.sets, snakemake.input.prompts, snakemake.output):
    job = ProbeJob(prompt_file, None, snakemake.params.vector_dtype)
    start = time.perf_counter()
    records = subspace_records(dense, variant, job.prompts, option_ids, job.answers)
    log_probe_throughput(log, "subspace", probe_set, job.prompts, records, time.perf_counter() - start)
    job.write(records, path, model=snakemake.wildcards.model, variant=snakemake.params.variant, probe="subspace",
              probe_set=probe_set, option_token_form=form)
    log.info("%s: %d rows, option tokens %s (%r form) -> %s", probe_set, len(records), option_ids, form, path)
