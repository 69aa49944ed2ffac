"""Rule layer_scores: attention / MLP / block similarity of the dense model on the calibration set."""

import pyarrow as pa

from prunescope.calibration import read_calibration
from prunescope.device import resolve_device
from prunescope.dropping import layer_scores
from prunescope.io import read_settings, write_parquet
from prunescope.loading import load_model
from prunescope.runlog import setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
model, _ = load_model(snakemake.input.model)
ids = read_calibration(snakemake.input.calibration)
scores = layer_scores(model, ids, device=resolve_device(snakemake.params.device), batch_size=snakemake.params.batch_size)
scores.insert(0, "model", snakemake.wildcards.model)
write_parquet(pa.Table.from_pandas(scores, preserve_index=False), snakemake.output[0], {
    "calibration": {"file": snakemake.input.calibration, **read_settings(snakemake.input.calibration)},
    "attn": "cos(X, X + Attn(LN X)), X = residual entering the layer",
    "mlp": "cos(X, X + MLP(LN X)), X = residual entering the MLP block",
    "block": "cos(layer input, layer output) (ShortGPT Block Influence = 1 - similarity)",
    "average": "mean over all calibration tokens",
})
log.info("scores:\n%s", scores.to_string())
