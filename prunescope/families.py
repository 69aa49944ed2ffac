"""The rule families of the workflow: rules that share one definition in a rule file and differ only in
the values held here.

- probes (rules/analysis.smk): ``probe_layerwise_drop``, ``probe_generation_dense`` and
  ``probe_subspace_dense`` run the dense model once; ``probe_layerwise_pruned``, ``probe_generation`` and
  ``probe_subspace`` run one variant against it (the last two read the dense table as their reference);
- metrics (rules/analysis.smk): ``metrics_{layerwise|generation|subspace}``, one per probe kind;
- rewrites (rules/prune.smk): ``prune`` and ``quantize``, which save a variant as a stock checkpoint.

Each record holds its rule's name, output patterns (with ``{model}`` and, for variant rules, ``{variant}``
left for Snakemake), log and benchmark paths, the wildcard constraint of ``{variant}``, the params that
change its result, and the name of its thin script (params ``script``). Adding a probe kind means one
record here, one output in :mod:`prunescope.targets` and one script.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prunescope import paths
from prunescope.config import canonical
from prunescope.targets import RunTargets
from prunescope.variants import CHECKPOINT_KINDS, name_pattern

# Final hidden states are already post-norm: only the layer-wise residuals may take the final norm first.
FINAL_NORM_PROBES = ("layerwise",)


@dataclass(frozen=True)
class RuleRecord:
    """One rule of a family. ``variant`` is "dense" for the dense-model rules, else None (a wildcard)."""

    name: str
    outputs: list[str] | dict[str, str]  # probe and metrics tables; a rewrite's table beside its model folder
    log: str
    benchmark: str
    params: dict[str, Any]  # always holds "script": the rule file formats the script path from it per job
    variant: str | None = None
    variant_pattern: str = name_pattern()
    inputs: dict[str, list[str]] = field(default_factory=dict)
    loads_variant: bool = True  # False: the job reads only the dense checkpoint besides its own inputs
    resources: dict[str, Any] = field(default_factory=dict)  # mem_mb and runtime; the rule file adds gpu

    def job_inputs(self, run: RunTargets, wildcards) -> dict[str, Any]:
        """A job's inputs: what makes its variant loadable, then the family's own inputs, wildcards set."""
        values = dict(wildcards.items())
        variant = self.variant or values["variant"] if self.loads_variant else "dense"
        filled = {key: [paths.fill(p, **values) for p in patterns] for key, patterns in self.inputs.items()}
        return {**run.variant_inputs(values["model"], variant), **filled}


def _job_paths(folder: str, name: str, variant: str | None) -> tuple[str, str]:
    where = "{model}/" + (variant or "{variant}") + "/" + folder + name
    return f"logs/{where}.log", f"benchmarks/{where}.tsv"


def probe_rules(run: RunTargets, config: dict[str, Any]) -> list[RuleRecord]:
    """The probe family, in dependency order (the dense generation and subspace tables are the variants'
    references)."""
    decoding = canonical({key: config["probes"][key] for key in ("temperature", "seed", "max_new_tokens")})
    shared = {"vector_dtype": config["probes"]["vector_dtype"], "device": config["device"]}
    records = []
    for name, probe, variant, pattern in (
        ("probe_layerwise_drop", "layerwise", "dense", None),
        ("probe_layerwise_pruned", "layerwise", None, name_pattern(*CHECKPOINT_KINDS)),
        ("probe_generation_dense", "generation", "dense", None),
        ("probe_generation", "generation", None, name_pattern("prune", "quant", "drop")),
        ("probe_subspace_dense", "subspace", "dense", None),
        ("probe_subspace", "subspace", None, name_pattern("prune", "quant", "drop")),
    ):
        sets = run.sets_for(probe)
        if not sets:
            continue
        fixed = {"variant": variant} if variant else {}
        inputs = {"prompts": paths.fill_each(paths.PROMPTS, "probe_set", sets)}
        if probe in ("generation", "subspace") and variant is None:
            inputs["reference"] = paths.fill_each(paths.PROBE, "probe_set", sets, variant="dense", probe=probe)
        log, benchmark = _job_paths("probes/", probe, variant)
        params = {**shared, "sets": sets, "script": f"probe_{probe}"}
        if probe != "subspace":  # one forward pass, no decoding
            params["decoding"] = decoding
        # The variant the job analyses: fixed for the dense rules, the wildcard otherwise.
        params["variant"] = variant or (lambda wildcards: wildcards.variant)
        records.append(RuleRecord(
            name=name, variant=variant, variant_pattern=pattern or name_pattern(),
            outputs=paths.fill_each(paths.PROBE, "probe_set", sets, probe=probe, **fixed),
            log=log, benchmark=benchmark, params=params, inputs=inputs,
            resources={"mem_mb": 8000, "runtime": 60 if probe == "subspace" else 240},
        ))
    return records


def metrics_rules(run: RunTargets, config: dict[str, Any]) -> list[RuleRecord]:
    """The metrics family: one rule per probe kind, over every variant that probe ran for. Metrics read
    only the dense checkpoint's head, so their inputs name the dense model whatever the variant."""
    records = []
    for probe, pattern in (("layerwise", name_pattern()), ("generation", name_pattern("prune", "quant", "drop")),
                           ("subspace", name_pattern("prune", "quant", "drop"))):
        sets = run.sets_for(probe)
        if not sets:
            continue
        inputs = {"probes": paths.fill_each(paths.PROBE, "probe_set", sets, probe=probe)}
        if probe == "generation":
            inputs["references"] = paths.fill_each(paths.PROBE, "probe_set", sets, variant="dense", probe=probe)
        log, benchmark = _job_paths("metrics/", probe, None)
        final_norm = probe in FINAL_NORM_PROBES and config["metrics"]["final_norm"]
        records.append(RuleRecord(
            name=f"metrics_{probe}", variant_pattern=pattern,
            outputs=paths.fill_each(paths.METRICS, "probe_set", sets, probe=probe),
            log=log, benchmark=benchmark, inputs=inputs, loads_variant=False,
            resources={"mem_mb": 8000, "runtime": 60},
            params={"temperatures": metrics_temperatures(config, probe), "device": config["device"],
                    "script": "metrics", "apply_final_norm": final_norm},
        ))
    return records


def metrics_temperatures(config: dict[str, Any], probe: str):
    """The temperatures of a metrics rule: ``metrics.temperatures``, plus ``metrics.ablation_temperatures``
    for the dense model's drop-mode layer-wise table only (the Fig 11 ablation reads no other table). For
    the layer-wise rule this is a function of the job's wildcards, so each job's params hold its own list."""
    temperatures = [float(t) for t in config["metrics"]["temperatures"]]
    ablation = [float(t) for t in config["metrics"].get("ablation_temperatures", [])]
    if probe != "layerwise" or not set(ablation) - set(temperatures):
        return temperatures
    dense = sorted(set(temperatures) | set(ablation))

    def per_variant(wildcards, dense=tuple(dense), others=tuple(temperatures)):
        return list(dense if wildcards.variant == "dense" else others)

    return per_variant


def rewrite_rules(config: dict[str, Any]) -> list[RuleRecord]:
    """prune and quantize: each writes the variant's checkpoint and its per-module table."""
    records = []
    for name, kind, table, section in (("prune", "prune", "sparsity", "pruning"),
                                       ("quantize", "quant", "quantization", "quantization")):
        log, benchmark = _job_paths("", name, None)
        records.append(RuleRecord(
            name=name, variant_pattern=name_pattern(kind), log=log, benchmark=benchmark,
            outputs={table: paths.BUILD_OUTPUT[kind]},
            params={"settings": canonical(config[section]), "device": config["device"], "script": name},
            resources={"mem_mb": 16000, "runtime": 240},
        ))
    return records
