"""Rule calibration: sample token windows from the configured dataset with the model's tokenizer."""

from transformers import AutoTokenizer

from prunescope.calibration import load_documents, sample_windows, write_calibration
from prunescope.runlog import setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
settings = dict(snakemake.params.settings)
tokenizer = AutoTokenizer.from_pretrained(snakemake.input.model)
documents = load_documents(settings["dataset"])
log.info("%d %s documents; sampling %s", len(documents), settings["dataset"], settings)
ids = sample_windows(documents, tokenizer, settings["n_samples"], settings["seqlen"], settings["seed"])
write_calibration(ids, snakemake.output[0], {**settings, "model": snakemake.wildcards.model})
log.info("wrote %s %s", tuple(ids.shape), snakemake.output[0])
