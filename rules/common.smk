# Shared names for every rule file. What the configuration asks for, and every path, come from the library
# (prunescope.targets, prunescope.paths); the rule files only wire them to rules.
import re

from prunescope import paths
from prunescope.config import ConfigError, canonical
from prunescope.families import metrics_rules, probe_rules, rewrite_rules
from prunescope.models import source_settings
from prunescope.preflight import check_run_inputs
from prunescope.schedule import priority
from prunescope.targets import RunTargets
from prunescope.tasks import TaskConfigError, check_tasks
from prunescope.tasks.inputs import data_inputs, fetched_tasks
from prunescope.tasks.registry import TASKS as TASK_REGISTRY
from prunescope.offline import hub_offline
from prunescope.variants import name_pattern

# Bad input the schema cannot see (missing folders, drop counts, group sizes, unknown or unfetched tasks)
# fails here, before any job runs.
try:
    check_run_inputs(config)
    check_tasks(config["tasks"], offline=hub_offline(), fetched=fetched_tasks(config["tasks"]))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

RUN = RunTargets(config)
MODELS = RUN.models
VARIANTS = RUN.variants


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    variant="|".join(re.escape(v) for v in VARIANTS),


# Heavy model rules ask for one GPU unless the config pins the CPU; the slurm plugin maps `gpu` to
# --gpus, and a workstation can serialise GPU jobs with `--resources gpu=1`.
GPUS_PER_JOB = 0 if config["device"] == "cpu" else 1
# Declared once per family; the slurm profile raises them per rule for 7-8B models.
# Those of the probe, metrics and rewrite families are in their records (prunescope.families).
MODEL_JOB = {"mem_mb": 16000, "runtime": 240, "gpu": GPUS_PER_JOB}  # score layers, evaluate tasks
LIGHT_JOB = {"mem_mb": 4000, "runtime": 15}

DEVICE = config["device"]
# Params carry exactly what changes a result, in canonical form (sorted keys), so a reordered YAML file
# or a changed chunk size reruns nothing; knobs that cannot change a result (chunk sizes, batch sizes of
# batch-independent stages) are read by the scripts from `snakemake.config` instead.
TEMPERATURES = config["metrics"]["temperatures"]
TASKS_CONFIG = canonical(config["tasks"])
TASK_NAMES = RUN.task_names
TASK_DATA = data_inputs(config["tasks"])
