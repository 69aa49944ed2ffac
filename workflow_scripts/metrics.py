"""Rules metrics_*: the metrics table of each probe table of one (model, variant, probe)."""

from prunescope.device import resolve_device
from prunescope.metrics.head_loading import load_head
from prunescope.metrics.job import probe_metrics, write_metrics
from prunescope.runlog import setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
temperatures, apply_final_norm = snakemake.params.temperatures, snakemake.params.apply_final_norm
# Rows per pass through the head bound memory only; not a param, so changing it reruns nothing.
chunk_rows = snakemake.config["metrics"]["chunk_rows"]
device = resolve_device(snakemake.params.device)
# The dense model's own head is every metric's lens (pruning never touches it); only its tensors are read.
head = load_head(snakemake.input.model, apply_final_norm=apply_final_norm)
references = snakemake.input.get("references") or [None] * len(snakemake.output)
for probe_file, reference_file, path in zip(snakemake.input.probes, references, snakemake.output):
    frame = probe_metrics(probe_file, head, temperatures, reference_file, chunk_rows, device)
    write_metrics(frame, path, probe_file,
                  {"temperatures": temperatures, "chunk_rows": chunk_rows, "apply_final_norm": apply_final_norm})
    log.info("%s: %d metric rows -> %s", probe_file, len(frame), path)
