"""Rule drop_spec: choose which units drop-{unit}-{k} removes and record the plan in drop_spec.json."""

import pandas as pd
from transformers import AutoConfig

from prunescope.batching import Job, scoring_batch_size
from prunescope.calibration import read_calibration
from prunescope.device import resolve_device, resolve_dtype
from prunescope.dropping import iterative_drops, make_plan_record, model_fingerprint, select_drops, write_plan_file
from prunescope.io import read_settings
from prunescope.loading import load_model
from prunescope.runlog import setup_job
from prunescope.variants import parse_variant

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
drop = parse_variant(snakemake.wildcards.variant)
selection = snakemake.params.selection
config = AutoConfig.from_pretrained(snakemake.input.model)
scores = pd.read_parquet(snakemake.input.scores)
calibration = read_settings(snakemake.input.scores)["calibration"]
# The record takes each dropped layer's similarity from `similarities`: the dense scores table (one-shot) or
# the similarity each layer had in the round it was chosen (iterative).
if selection == "one_shot":
    layers = select_drops(scores, drop.unit, drop.k)
    similarities = scores
else:
    device, dtype = resolve_device(snakemake.params.device), resolve_dtype(snakemake.params.dtype)
    ids = read_calibration(snakemake.input.calibration)
    job = Job(snakemake.input.model, device, dtype, dict(snakemake.resources.items()))
    batch_size = scoring_batch_size(snakemake.params.batch_size, job, seqlen=ids.shape[1])
    model, _ = load_model(snakemake.input.model, dtype=dtype)
    layers, similarities = iterative_drops(model, ids, drop.unit, drop.k, device, batch_size)
record = make_plan_record(snakemake.wildcards.model, drop.name, drop.unit, drop.k, layers, similarities,
                          calibration, model_fingerprint(config, snakemake.wildcards.model), selection=selection)
write_plan_file(record, snakemake.output[0])
log.info("%s drops %s layers %s", drop.name, drop.unit, record["layers"])
