"""Variant names and their typed specs.

One parser turns a variant name into a spec; every stage uses it, and the config schema's pattern
mirrors :data:`VARIANT_PATTERN`. Names:

- ``dense``: the unmodified model;
- ``{magnitude|wanda|sparsegpt}-unstructured{P}``: intra-layer pruning, P % of each row / matrix zero;
- ``{magnitude|wanda|sparsegpt}-{N}of{M}``: N:M semi-structured pruning (N zeros in every M inputs);
- ``drop-{attn|mlp|block}-{k}``: inter-layer dropping of k attention / MLP sublayers or whole blocks;
- ``quant-{rtn|gptq|awq}-w{B}g{G}``: weight-only quantisation to B bits (2..8), asymmetric with a zero
  point, one scale per group of G consecutive input weights of a row; ``quant-{method}-w{B}`` (no ``g``)
  is per output channel, one scale per whole row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRUNING_METHODS = ("magnitude", "wanda", "sparsegpt")
DROP_UNITS = ("attn", "mlp", "block")
QUANT_METHODS = ("rtn", "gptq", "awq")

# The grammar, one regular expression per kind; the workflow's wildcard constraints are built from these.
KIND_PATTERNS = {
    "dense": r"dense",
    "prune": r"(magnitude|wanda|sparsegpt)-(unstructured[1-9][0-9]?|[1-9][0-9]*of[1-9][0-9]*)",
    "drop": r"drop-(attn|mlp|block)-[1-9][0-9]*",
    "quant": r"quant-(rtn|gptq|awq)-w[2-8](g[1-9][0-9]*)?",
}
# Kinds whose variant is a rewritten copy of the weights, saved as a stock checkpoint (results/.../model).
CHECKPOINT_KINDS = ("prune", "quant")


def name_pattern(*kinds: str) -> str:
    """A regular expression (no anchors) matching the variant names of ``kinds`` (all kinds if none given)."""
    unknown = sorted(set(kinds) - set(KIND_PATTERNS))
    if unknown:
        raise ValueError(f"unknown variant kind(s) {unknown}; allowed: {sorted(KIND_PATTERNS)}")
    return "(" + "|".join(f"(?:{KIND_PATTERNS[k]})" for k in (kinds or KIND_PATTERNS)) + ")"


VARIANT_PATTERN = f"^{name_pattern()}$"

ALLOWED_DESCRIPTION = (
    "'dense', '{magnitude|wanda|sparsegpt}-unstructured{1..99}', "
    "'{magnitude|wanda|sparsegpt}-{N}of{M}' with 0<N<M (e.g. 2of4, 4of8), "
    "'drop-{attn|mlp|block}-{k}' with k>=1, "
    "or 'quant-{rtn|gptq|awq}-w{bits}g{group}' / 'quant-{rtn|gptq|awq}-w{bits}' (bits 2..8; no g = per channel)"
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


@dataclass(frozen=True)
class QuantSpec:
    """Weight-only quantisation: ``group_size`` None means one group per output row (per channel)."""

    name: str
    method: str
    bits: int
    group_size: int | None
    kind: str = "quant"


VariantSpec = DenseSpec | PruneSpec | DropSpec | QuantSpec


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
    if head == "quant":
        method, width = rest.split("-")
        bits, _, group = width[1:].partition("g")
        return QuantSpec(name=name, method=method, bits=int(bits), group_size=int(group) if group else None)
    if rest.startswith("unstructured"):
        return PruneSpec(name=name, method=head, sparsity=int(rest[len("unstructured"):]) / 100, n_of_m=None)
    n, m = (int(x) for x in rest.split("of"))
    if not 0 < n < m:
        raise VariantError(f"variant {name!r}: N:M pattern needs 0 < N < M, got N={n}, M={m}")
    return PruneSpec(name=name, method=head, sparsity=n / m, n_of_m=(n, m))
