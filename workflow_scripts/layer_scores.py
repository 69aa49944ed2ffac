"""Rule layer_scores: attention / MLP / block similarity of the dense model on the calibration set."""

import pyarrow as pa

from prunescope.batching import Job, scoring_batch_size
from prunescope.calibration import read_calibration
from prunescope.device import resolve_device, resolve_dtype
from prunescope.dropping import layer_scores
from prunescope.io import read_settings, write_parquet
from prunescope.loading import load_model
from prunescope.runlog import setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
device, dtype = resolve_device(snakemake.params.device), resolve_dtype(snakemake.params.dtype)
ids = read_calibration(snakemake.input.calibration)
job = Job(snakemake.input.model, device, dtype, dict(snakemake.resources.items()))
batch_size = scoring_batch_size(snakemake.params.batch_size, job, seqlen=ids.shape[1])
log.info("batch size %d (dropping.batch_size: %s)", batch_size, snakemake.params.batch_size)
model, _ = load_model(snakemake.input.model, dtype=dtype, device=device)
scores = layer_scores(model, ids, device=device, batch_size=batch_size)
scores.insert(0, "model", snakemake.wildcards.model)
write_parquet(pa.Table.from_pandas(scores, preserve_index=False), snakemake.output[0], {
    "calibration": {"file": snakemake.input.calibration, **read_settings(snakemake.input.calibration)},
    "attn": "cos(X, X + Attn(LN X)), X = residual entering the layer",
    "mlp": "cos(X, X + MLP(LN X)), X = residual entering the MLP block",
    "block": "cos(layer input, layer output) (ShortGPT Block Influence = 1 - similarity)",
    "average": "mean over all calibration tokens",
    "dtype": snakemake.params.dtype, "batch_size": batch_size,
})
log.info("scores:\n%s", scores.to_string())
