"""The drop plan: which attention sublayers, MLP sublayers and whole blocks a variant drops.

A plan is a plain value (layer indices per unit). The rest of the package builds on it one way:
:mod:`.hooks` applies a plan to a stock model, :mod:`.scores` measures layers (optionally with a plan
applied), :mod:`.selection` chooses a plan from scores, and :mod:`.plan_file` stores a plan with its
provenance in ``drop_spec.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prunescope.variants import DROP_UNITS

# How a plan's layers were chosen (see :mod:`.selection`); recorded in drop_spec.json.
SELECTION_MODES = ("one_shot", "iterative")


class DropPlanError(ValueError):
    """A drop plan that cannot be made or used: bad unit or k, a malformed drop_spec.json, another model's."""


@dataclass(frozen=True)
class DropPlan:
    """Layer indices whose attention sublayer, MLP sublayer or whole block is dropped."""

    attn: frozenset[int] = field(default_factory=frozenset)
    mlp: frozenset[int] = field(default_factory=frozenset)
    block: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self):
        for unit in DROP_UNITS:  # accept any iterable of ints, store a frozenset
            object.__setattr__(self, unit, frozenset(int(i) for i in getattr(self, unit)))

    @classmethod
    def of(cls, unit: str, layers) -> "DropPlan":
        """The plan that drops ``unit`` ('attn', 'mlp' or 'block') in each of ``layers``."""
        check_unit(unit)
        return cls(**{unit: frozenset(layers)})


def check_unit(unit: str) -> None:
    if unit not in DROP_UNITS:
        raise DropPlanError(f"unknown drop unit {unit!r}; allowed: {', '.join(DROP_UNITS)}")


def check_selection(selection: str) -> None:
    if selection not in SELECTION_MODES:
        raise DropPlanError(f"unknown selection {selection!r}; allowed: {', '.join(SELECTION_MODES)}")
