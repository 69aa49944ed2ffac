"""Rule task_eval: evaluate one variant on every configured task; per-task Parquet + summary + raw lm-eval output."""

import json
from pathlib import Path

from prunescope.tasks.fetch import use_fetched_data

# First, before anything imports datasets: hub tasks read the cache that their local task_fetch job filled,
# never the network (compute nodes may have none).
use_fetched_data([json.loads(Path(path).read_text()) for key, path in snakemake.input.items()
                  if key.startswith("fetched_")])

from prunescope.batching import Job, embedding_batch_size, evaluation_batch_size  # noqa: E402 (after the offline switch)
from prunescope.device import resolve_device, resolve_dtype  # noqa: E402
from prunescope.loading import load_variant  # noqa: E402
from prunescope.runlog import setup_job  # noqa: E402
from prunescope.tasks.outputs import run_settings, write_evaluation  # noqa: E402
from prunescope.tasks.runner import EvalSettings, TaskEntry, evaluate_tasks  # noqa: E402
from prunescope.tasks.sandbox import SandboxLimits  # noqa: E402

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
model_name, variant = snakemake.wildcards.model, snakemake.wildcards.variant
config = snakemake.params.tasks
variant_file = snakemake.input.get("variant")
device = resolve_device(snakemake.params.device)
entries = [TaskEntry.from_config(entry) for entry in config["benchmarks"]]
retrieval = config["retrieval"]
job = Job(snakemake.input.model, device, resolve_dtype(snakemake.params.dtype), dict(snakemake.resources.items()))
batch_size = evaluation_batch_size(config["batch_size"], job)
retrieval_batch_size = embedding_batch_size(retrieval["batch_size"], job, retrieval["max_tokens"])
log.info("batch sizes: lm-eval %d (tasks.batch_size: %s), retrieval %d (tasks.retrieval.batch_size: %s)",
         batch_size, config["batch_size"], retrieval_batch_size, retrieval["batch_size"])
settings = EvalSettings(
    source=config["source"], batch_size=batch_size, apply_chat_template=config["apply_chat_template"],
    sandbox=SandboxLimits(**config["sandbox"]), retrieval_batch_size=retrieval_batch_size,
    retrieval_max_tokens=retrieval["max_tokens"], retrieval_query_prefix=retrieval["query_prefix"],
)
model, tokenizer = load_variant(snakemake.input.model, variant, Path(variant_file).parent if variant_file else None,
                                dtype=snakemake.params.dtype, device=device, model_key=model_name)
data_paths = {key[len("data_"):]: path for key, path in snakemake.input.items() if key.startswith("data_")}
evaluation = evaluate_tasks(model, tokenizer, entries, settings, data_paths)
write_evaluation(
    evaluation, entries, model=model_name, variant=variant, task_paths=list(snakemake.output.tables),
    data_paths=data_paths, summary_path=snakemake.output.summary, raw_path=snakemake.output.raw,
    raw_samples_path=snakemake.output.raw_samples,
    settings=run_settings(settings, dtype=snakemake.params.dtype, device=str(device)),
)
log.info("%s/%s: %s", model_name, variant, ", ".join(f"{k} {v:.0f} s" for k, v in evaluation.seconds.items()))
