"""Variant names and their typed specs.

One parser turns a variant name into a spec; every stage uses it, and the config schema's pattern
mirrors :data:`VARIANT_PATTERN`. Names:

- ``dense``: the unmodified model;
- ``{magnitude|wanda|sparsegpt}-unstructured{P}``: intra-layer pruning, P % of each row / matrix zero;
- ``{magnitude|wanda|sparsegpt}-{N}of{M}``: N:M semi-structured pruning (N zeros in every M inputs);
- ``drop-{attn|mlp|block}-{k}``: inter-layer dropping of k attention / MLP sublayers or whole blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRUNING_METHODS = ("magnitude", "wanda", "sparsegpt")
DROP_UNITS = ("attn", "mlp", "block")

VARIANT_PATTERN = (
    r"^(dense"
    r"|(magnitude|wanda|sparsegpt)-(unstructured[1-9][0-9]?|[1-9][0-9]*of[1-9][0-9]*)"
    r"|drop-(attn|mlp|block)-[1-9][0-9]*)$"
)

ALLOWED_DESCRIPTION = (
    "'dense', '{magnitude|wanda|sparsegpt}-unstructured{1..99}', "
    "'{magnitude|wanda|sparsegpt}-{N}of{M}' with 0<N<M (e.g. 2of4, 4of8), "
    "or 'drop-{attn|mlp|block}-{k}' with k>=1"
)


class VariantError(ValueError):
    """A variant name that does not follow the grammar above."""


@dataclass(frozen=True)
class DenseSpec:
    name: str = "dense"
    kind: str = "dense"


@dataclass(frozen=True)
class PruneSpec:
    """Intra-layer pruning: ``n_of_m`` is None for unstructured sparsity."""

    name: str
    method: str
    sparsity: float
    n_of_m: tuple[int, int] | None
    kind: str = "prune"

    @property
    def pattern(self) -> str:
        return "unstructured" if self.n_of_m is None else f"{self.n_of_m[0]}:{self.n_of_m[1]}"


@dataclass(frozen=True)
class DropSpec:
    """Inter-layer dropping of ``k`` units of kind ``unit``."""

    name: str
    unit: str
    k: int
    kind: str = "drop"


VariantSpec = DenseSpec | PruneSpec | DropSpec


def parse_variant(name: str) -> VariantSpec:
    """Parse a variant name; raise :class:`VariantError` naming the value and the grammar."""
    if not isinstance(name, str) or not re.match(VARIANT_PATTERN, name):
        raise VariantError(f"unknown variant {name!r}; allowed: {ALLOWED_DESCRIPTION}")
    if name == "dense":
        return DenseSpec()
    head, rest = name.split("-", 1)
    if head == "drop":
        unit, k = rest.split("-")
        return DropSpec(name=name, unit=unit, k=int(k))
    if rest.startswith("unstructured"):
        return PruneSpec(name=name, method=head, sparsity=int(rest[len("unstructured"):]) / 100, n_of_m=None)
    n, m = (int(x) for x in rest.split("of"))
    if not 0 < n < m:
        raise VariantError(f"variant {name!r}: N:M pattern needs 0 < N < M, got N={n}, M={m}")
    return PruneSpec(name=name, method=head, sparsity=n / m, n_of_m=(n, m))
