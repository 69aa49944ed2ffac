"""Rule prune: prune the dense model into results/{model}/{variant}/model + sparsity.parquet."""

import time

import pyarrow as pa

from prunescope.batching import Job, pruning_batch_size
from prunescope.calibration import read_calibration
from prunescope.device import resolve_device, resolve_dtype
from prunescope.io import atomic_path, read_settings, write_parquet
from prunescope.loading import load_model
from prunescope.pruning import prune_model
from prunescope.runlog import setup_job
from prunescope.variants import parse_variant

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
spec = parse_variant(snakemake.wildcards.variant)
settings = dict(snakemake.params.settings)
device, dtype = resolve_device(snakemake.params.device), resolve_dtype(snakemake.params.dtype)
calibration = snakemake.input.get("calibration")
ids = read_calibration(calibration) if calibration else None
if ids is not None:  # magnitude pruning runs no data
    job = Job(snakemake.input.model, device, dtype, dict(snakemake.resources.items()))
    settings["batch_size"] = pruning_batch_size(settings["batch_size"], job, *ids.shape)
    log.info("batch size %d (pruning.batch_size: %s)", settings["batch_size"], snakemake.params.settings["batch_size"])
model, tokenizer = load_model(snakemake.input.model, dtype=dtype)

started = time.perf_counter()
rows = prune_model(
    model, spec, ids, device=device, batch_size=settings["batch_size"] if ids is not None else 1,
    sparsegpt_blocksize=settings["sparsegpt_blocksize"], sparsegpt_percdamp=settings["sparsegpt_percdamp"],
)
wall = time.perf_counter() - started
log.info("pruned %s in %.1f s", spec.name, wall)

model.to("cpu")
with atomic_path(snakemake.output.model) as tmp:
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
table = pa.Table.from_pylist([{"model": snakemake.wildcards.model, "variant": spec.name, **row} for row in rows])
write_parquet(table, snakemake.output.sparsity, {
    "method": spec.method, "pattern": spec.pattern, "target_sparsity": spec.sparsity,
    "calibration": calibration and {"file": calibration, **read_settings(calibration)},
    "pruning": settings, "wall_time_s": wall, "dtype": snakemake.params.dtype,
})
