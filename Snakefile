# prunescope: where pruning damage appears along h -> z -> p, and which tasks survive it.
# Thin on purpose: configuration, validation, the rule files, and the final targets.
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, workflow.basedir)  # the prunescope package, also when not pip-installed

from prunescope.config import ConfigError, check_config, load_schema

# The embedded default, unless a config file was given with --configfile (merging the two would add
# the default model to every run).
if "models" not in config:

    configfile: "config/config.yaml"


# One readable message naming every bad key before any job is scheduled; then Snakemake's own
# validation fills the schema defaults into `config`.
try:
    check_config(config, load_schema(workflow.source_path("config/schema.yaml")))
except ConfigError as err:
    raise WorkflowError(str(err)) from None
validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/calibration.smk"
include: "rules/prune.smk"
include: "rules/drop.smk"
include: "rules/probes.smk"
include: "rules/analysis.smk"
include: "rules/report.smk"
include: "rules/tasks.smk"


rule all:
    input:
        RUN.final_targets(),
    default_target: True
