"""Rule quantize: quantise the dense model into results/{model}/{variant}/model + quantization.parquet.

The model folder is a stock Hugging Face checkpoint of the de-quantised weights, with the grids (scales
and zero points per linear and group) in model/quantization/grid.safetensors.
"""

import time
from pathlib import Path

import pyarrow as pa

from prunescope.batching import Job, pruning_batch_size
from prunescope.calibration import read_calibration
from prunescope.device import resolve_device, resolve_dtype
from prunescope.io import atomic_path, read_settings, write_parquet
from prunescope.loading import load_model
from prunescope.quantization import GRID_FILE, quantize_model, save_grids
from prunescope.runlog import setup_job
from prunescope.variants import parse_variant

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
spec = parse_variant(snakemake.wildcards.variant)
settings = dict(snakemake.params.settings)  # the schema filled every default
device, dtype = resolve_device(snakemake.params.device), resolve_dtype(snakemake.params.dtype)
calibration = snakemake.input.get("calibration")
ids = read_calibration(calibration) if calibration else None
if ids is not None:  # the layer-by-layer pass has the memory profile of SparseGPT's
    job = Job(snakemake.input.model, device, dtype, dict(snakemake.resources.items()))
    settings["batch_size"] = pruning_batch_size(settings["batch_size"], job, *ids.shape)
    log.info("batch size %d (quantization.batch_size: %s)", settings["batch_size"], snakemake.params.settings["batch_size"])
model, tokenizer = load_model(snakemake.input.model, dtype=dtype)

started = time.perf_counter()
result = quantize_model(
    model, spec, ids, device=device, batch_size=settings["batch_size"] if ids is not None else 1,
    gptq_blocksize=settings["gptq_blocksize"], gptq_percdamp=settings["gptq_percdamp"],
    gptq_act_order=settings["gptq_act_order"], awq_grid=settings["awq_grid"],
)
wall = time.perf_counter() - started
log.info("quantised %s in %.1f s", spec.name, wall)

model.to("cpu")
with atomic_path(snakemake.output.model) as tmp:
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_grids(result.grids, Path(tmp) / GRID_FILE)
table = pa.Table.from_pylist(
    [{"model": snakemake.wildcards.model, "variant": spec.name, **row} for row in result.rows],
    schema=pa.schema([("model", pa.string()), ("variant", pa.string()), ("layer", pa.int64()), ("module", pa.string()),
                      ("method", pa.string()), ("bits", pa.int64()), ("group_size", pa.int64()), ("n_params", pa.int64()),
                      ("weight_error", pa.float64()), ("output_error", pa.float64()), ("awq_alpha", pa.float64())]),
)
write_parquet(table, snakemake.output.quantization, {
    "method": spec.method, "bits": spec.bits, "group_size": spec.group_size,
    "calibration": calibration and {"file": calibration, **read_settings(calibration)},
    "quantization": settings, "wall_time_s": wall, "dtype": snakemake.params.dtype,
})
