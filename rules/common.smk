# Shared names, paths and helpers for every rule file.
import re

from prunescope.variants import parse_variant

MODELS = list(config["models"])
# The dense model is every variant's reference, so it is always part of the run.
VARIANTS = list(dict.fromkeys(["dense", *config["variants"]]))
VARIANT_SPECS = {name: parse_variant(name) for name in VARIANTS}


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    variant="|".join(re.escape(v) for v in VARIANTS),


def model_entry(wildcards):
    return config["models"][wildcards.model]


def final_targets():
    """Every output the default run should produce, grown stage by stage."""
    targets = expand("resources/models/{model}", model=MODELS)
    return targets
