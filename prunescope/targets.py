"""What a validated configuration asks the workflow to build, and what each job reads.

:class:`RunTargets` answers, from the config alone, which variants of which kind exist, which probe runs
on which prompt set and variant, which probe and metrics tables follow (as typed :class:`Table` records,
so nobody parses paths back), the final targets of ``rule all``, and the inputs of the build and analysis
jobs. The rule files only wire these answers to rules; the paths come from :mod:`prunescope.paths`.

Which probe runs for what (DESIGN.md, "probes"):

- ``layerwise``: drop mode once for the dense model (every sublayer removed alone, stored under
  ``dense/``), pruned mode for every checkpoint variant (pruned or quantised sublayer on the dense input);
- ``generation``: the dense reference trajectory once, then every other variant against it;
- ``subspace``: every non-dense variant, on multiple-choice sets only.

A probe set runs the probes listed in its ``probes`` key (default: every probe its kind allows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prunescope import paths
from prunescope.variants import CHECKPOINT_KINDS, VariantSpec, parse_variant

PROBES = ("layerwise", "generation", "subspace")
# Methods that rewrite weights without calibration data.
DATA_FREE_METHODS = ("magnitude", "rtn")


@dataclass(frozen=True)
class Table:
    """One probe or metrics table: its path and the keys it is written for."""

    path: str
    model: str
    variant: str
    probe: str
    probe_set: str


def probes_of_set(set_config: Mapping[str, Any]) -> tuple[str, ...]:
    """The probes a prompt set runs: its ``probes`` key, else every probe its kind allows."""
    allowed = PROBES if set_config["kind"] == "multiple_choice" else PROBES[:2]
    return tuple(set_config.get("probes") or allowed)


def calibration_name(calibration: Mapping[str, Any]) -> str:
    """The calibration file's name encodes every setting, so a changed setting makes a new file."""
    return "{dataset}-n{n_samples}-len{seqlen}-seed{seed}".format(**calibration)


class RunTargets:
    """The outputs and job inputs of one configuration (``config`` validated, schema defaults filled)."""

    def __init__(self, config: Mapping[str, Any]):
        self.models = list(config["models"])
        # The dense model is every variant's reference, so it is always part of the run.
        names = list(dict.fromkeys(["dense", *config["variants"]]))
        self.specs: dict[str, VariantSpec] = {name: parse_variant(name) for name in names}
        # Sorted by name: the order of every set list and output list, whatever the YAML order.
        self.probe_sets = {name: dict(spec) for name, spec in sorted(config["probes"]["sets"].items())}
        self.task_names = [entry["name"] for entry in config["tasks"]["benchmarks"]]
        self.calibration = calibration_name(config["calibration"])
        self.iterative_dropping = config["dropping"]["selection"] == "iterative"

    # Variants ---------------------------------------------------------------------------------------
    @property
    def variants(self) -> list[str]:
        return list(self.specs)

    def of_kind(self, *kinds: str) -> list[str]:
        return [name for name, spec in self.specs.items() if spec.kind in kinds]

    @property
    def non_dense(self) -> list[str]:
        return [name for name in self.specs if name != "dense"]

    # Probe sets and tables --------------------------------------------------------------------------
    def sets_for(self, probe: str) -> list[str]:
        """The prompt sets ``probe`` runs on, sorted by name."""
        return [name for name, spec in self.probe_sets.items() if probe in probes_of_set(spec)]

    def probe_variants(self, probe: str) -> list[str]:
        if probe == "layerwise":
            return ["dense", *self.of_kind(*CHECKPOINT_KINDS)]
        return self.variants if probe == "generation" else self.non_dense

    def probe_tables(self, model: str) -> list[Table]:
        return self._tables(paths.PROBE, model, with_reference=True)

    def metrics_tables(self, model: str) -> list[Table]:
        """One metrics table per probe table that compares a variant with the dense model (the dense
        generation table is the reference of the others, not a comparison)."""
        return self._tables(paths.METRICS, model, with_reference=False)

    def _tables(self, pattern: str, model: str, with_reference: bool) -> list[Table]:
        tables = []
        for probe in PROBES:
            for variant in self.probe_variants(probe):
                if variant == "dense" and probe == "generation" and not with_reference:
                    continue
                for probe_set in self.sets_for(probe):
                    path = paths.fill(pattern, model=model, variant=variant, probe=probe, probe_set=probe_set)
                    tables.append(Table(path, model, variant, probe, probe_set))
        return tables

    # Final targets ----------------------------------------------------------------------------------
    def final_targets(self) -> list[str]:
        """Every output of the default run: each stage's last files per model, then the report page."""
        targets = []
        for model in self.models:
            targets.append(paths.fill(paths.MODEL, model=model))
            for variant in self.non_dense:
                kind = self.specs[variant].kind
                targets.append(paths.fill(paths.BUILD_OUTPUT[kind], model=model, variant=variant))
            targets += [table.path for table in self.probe_tables(model) + self.metrics_tables(model)]
            if self.task_names:
                targets += [paths.fill(paths.TASK_SUMMARY, model=model, variant=v) for v in self.variants]
        return [*targets, paths.REPORT_PAGE]

    # Job inputs -------------------------------------------------------------------------------------
    def calibration_path(self, model: str) -> str:
        return paths.fill(paths.CALIBRATION, model=model, calibration=self.calibration)

    def variant_inputs(self, model: str, variant: str) -> dict[str, str]:
        """Inputs that make ``variant`` loadable with prunescope.loading.load_variant: ``model`` (the dense
        checkpoint) and, for a non-dense variant, ``variant``, the file its build step writes last (its
        folder is load_variant's ``variant_dir``)."""
        inputs = {"model": paths.fill(paths.MODEL, model=model)}
        kind = self.specs[variant].kind
        if kind in paths.BUILD_OUTPUT:
            inputs["variant"] = paths.fill(paths.BUILD_OUTPUT[kind], model=model, variant=variant)
        return inputs

    def rewrite_inputs(self, model: str, variant: str) -> dict[str, str]:
        """Inputs of a prune or quantize job: the dense checkpoint, plus calibration unless data-free."""
        inputs = {"model": paths.fill(paths.MODEL, model=model)}
        if self.specs[variant].method not in DATA_FREE_METHODS:
            inputs["calibration"] = self.calibration_path(model)
        return inputs

    def drop_plan_inputs(self, model: str) -> dict[str, str]:
        inputs = {"model": paths.fill(paths.MODEL, model=model),
                  "scores": paths.fill(paths.LAYER_SCORES, model=model)}
        if self.iterative_dropping:  # rescoring after each drop needs the calibration windows
            inputs["calibration"] = self.calibration_path(model)
        return inputs
