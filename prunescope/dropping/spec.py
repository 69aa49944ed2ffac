"""Which units to drop, and the ``drop_spec.json`` that records the choice.

Selection follows the published criteria: drop the k units whose output is most similar to their input
(highest cosine similarity, i.e. lowest importance 1 - s). For attention / MLP sublayers this is
LLM-Drop (He et al., "What matters in transformers? Not all attention is needed"; TMLR 2026, "Uncovering
the redundancy in transformers via a unified study of layer dropping"); for blocks it is ShortGPT's Block
Influence (Men et al., "ShortGPT: layers in large language models are more redundant than you expect",
2025). Selection is one-shot on the dense scores by default; ``iterative`` drops one unit, rescores the
dropped model and repeats (LLM-Drop's ``layer_drop_iterative``). Ties go to the lower layer index.

A spec carries a fingerprint of the model it was computed on; applying it to another model fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch
from torch import nn

from prunescope.adapter import model_parts
from prunescope.io import write_json
from prunescope.variants import DROP_UNITS, DropSpec, parse_variant

SELECTION_MODES = ("one_shot", "iterative")
SPEC_FORMAT = "prunescope.drop_spec/1"
FINGERPRINT_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "vocab_size")
_SPEC_KEYS = ("format", "model", "variant", "unit", "k", "layers", "similarity", "selection", "calibration",
              "fingerprint")


class DropSpecError(ValueError):
    """A drop selection or spec that cannot be used: bad k or unit, malformed file, or another model's."""


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
        _check_unit(unit)
        return cls(**{unit: frozenset(layers)})

    @property
    def is_empty(self) -> bool:
        return not (self.attn or self.mlp or self.block)


def _check_unit(unit: str) -> None:
    if unit not in DROP_UNITS:
        raise DropSpecError(f"unknown drop unit {unit!r}; allowed: {', '.join(DROP_UNITS)}")


def _check_k(unit: str, k: int, n_available: int, n_layers: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise DropSpecError(f"k={k!r} must be a positive integer (number of {unit} units to drop)")
    if k > n_available:
        raise DropSpecError(
            f"k={k} exceeds the {n_available} {unit} units available to drop "
            f"(the model has {n_layers} layers)"
        )


def select_drops(scores_df: pd.DataFrame, unit: str, k: int, selection: str = "one_shot",
                 exclude=()) -> list[int]:
    """The k layers of ``unit`` with the highest similarity (ties: lower index), sorted ascending.

    ``scores_df`` is :func:`prunescope.dropping.scores.layer_scores` output; ``exclude`` lists layers
    that may not be chosen (already dropped, during iterative selection).
    """
    _check_unit(unit)
    if selection != "one_shot":
        if selection == "iterative":
            raise DropSpecError("iterative selection rescores the model after every drop; "
                                "call iterative_drops(model, calibration_ids, unit, k, device)")
        raise DropSpecError(f"unknown selection {selection!r}; allowed: {', '.join(SELECTION_MODES)}")
    missing = {"unit", "layer", "similarity"} - set(scores_df.columns)
    if missing:
        raise DropSpecError(f"scores table lacks columns {sorted(missing)}")
    rows = scores_df[scores_df["unit"] == unit]
    n_layers = len(rows)
    if n_layers == 0 or sorted(rows["layer"]) != list(range(n_layers)):
        raise DropSpecError(f"scores table has no complete set of {unit!r} rows (layers 0..n-1 once each)")
    if rows["similarity"].isna().any():
        raise DropSpecError(f"scores table has NaN similarities for unit {unit!r}")
    candidates = rows[~rows["layer"].isin(list(exclude))]
    _check_k(unit, k, len(candidates), n_layers)
    ranked = candidates.sort_values(["similarity", "layer"], ascending=[False, True], kind="stable")
    return sorted(int(i) for i in ranked["layer"].iloc[:k])


def iterative_drops(model: nn.Module, calibration_ids: torch.Tensor, unit: str, k: int, device="cpu",
                    batch_size: int = 1) -> tuple[list[int], dict[int, float]]:
    """Drop one unit at a time, rescoring the already-dropped model before each choice.

    Returns the dropped layers in the order chosen and each one's similarity at the round it was chosen.
    """
    from prunescope.dropping.scores import layer_scores

    _check_unit(unit)
    n_layers = model_parts(model).n_layers
    _check_k(unit, k, n_layers, n_layers)
    chosen: list[int] = []
    similarity: dict[int, float] = {}
    for _ in range(k):
        scores = layer_scores(model, calibration_ids, device, batch_size, dropped=DropPlan.of(unit, chosen))
        (layer,) = select_drops(scores, unit, 1, exclude=chosen)
        chosen.append(layer)
        row = scores[(scores["unit"] == unit) & (scores["layer"] == layer)]
        similarity[layer] = float(row["similarity"].iloc[0])
    return chosen, similarity


def model_fingerprint(model_or_config, model_key: str | None = None) -> dict[str, Any]:
    """What a spec must match: the architecture fields of the config, plus the config key of the model."""
    config = getattr(model_or_config, "config", model_or_config)
    fingerprint = {key: getattr(config, key, None) for key in FINGERPRINT_KEYS}
    fingerprint["model"] = model_key
    return fingerprint


def check_fingerprint(spec: Mapping[str, Any], model_or_config, model_key: str | None = None) -> None:
    """Raise :class:`DropSpecError` if ``spec`` was made for a different model.

    The architecture fields always have to agree; the model key only when the caller passes one.
    """
    expected = model_fingerprint(model_or_config, model_key)
    recorded = spec["fingerprint"]
    keys = list(FINGERPRINT_KEYS) + (["model"] if model_key is not None else [])
    diffs = [f"{key}: spec {recorded.get(key)!r} vs model {expected[key]!r}" for key in keys
             if recorded.get(key) != expected[key]]
    if diffs:
        raise DropSpecError(
            f"drop spec {spec.get('variant')!r} was made for model {recorded.get('model')!r}, "
            f"not this one ({'; '.join(diffs)})"
        )


def make_drop_spec(model_name: str, variant: str, unit: str, k: int, layers, scores,
                   calibration_settings: Mapping[str, Any], model_fingerprint: Mapping[str, Any],
                   selection: str = "one_shot") -> dict[str, Any]:
    """Build the spec dict. ``scores``: a :func:`layer_scores` table or a {layer: similarity} mapping."""
    _check_unit(unit)
    parsed = parse_variant(variant)
    if not isinstance(parsed, DropSpec) or (parsed.unit, parsed.k) != (unit, k):
        raise DropSpecError(f"variant {variant!r} does not name a drop of k={k} {unit!r} units "
                            f"(expected 'drop-{unit}-{k}')")
    if selection not in SELECTION_MODES:
        raise DropSpecError(f"unknown selection {selection!r}; allowed: {', '.join(SELECTION_MODES)}")
    layers = sorted(int(i) for i in layers)
    if len(set(layers)) != k:
        raise DropSpecError(f"variant {variant!r} needs {k} distinct layers, got {layers}")
    if isinstance(scores, pd.DataFrame):
        rows = scores[scores["unit"] == unit]
        scores = dict(zip(rows["layer"].astype(int), rows["similarity"].astype(float)))
    missing = [i for i in layers if i not in scores]
    if missing:
        raise DropSpecError(f"no {unit} similarity score for layers {missing}")
    return {
        "format": SPEC_FORMAT,
        "model": model_name,
        "variant": variant,
        "unit": unit,
        "k": k,
        "layers": layers,
        "similarity": {str(i): float(scores[i]) for i in layers},
        "selection": selection,
        "calibration": dict(calibration_settings),
        "fingerprint": dict(model_fingerprint),
    }


def plan_from_spec(spec: Mapping[str, Any]) -> DropPlan:
    return DropPlan.of(spec["unit"], spec["layers"])


def write_drop_spec(spec: Mapping[str, Any], path: str | os.PathLike) -> None:
    _validate_spec(spec, path)
    write_json(spec, path)


def read_drop_spec(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"drop spec {path} does not exist (written by the drop-spec stage)")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DropSpecError(f"drop spec {path} is not valid JSON: {err}") from None
    _validate_spec(spec, path)
    return spec


def _validate_spec(spec: Mapping[str, Any], where) -> None:
    missing = [key for key in _SPEC_KEYS if key not in spec]
    if missing:
        raise DropSpecError(f"drop spec {where}: missing keys {missing}")
    if spec["format"] != SPEC_FORMAT:
        raise DropSpecError(f"drop spec {where}: format {spec['format']!r}, expected {SPEC_FORMAT!r}")
    _check_unit(spec["unit"])
    n_layers = spec["fingerprint"].get("num_hidden_layers") or 0
    layers = spec["layers"]
    in_range = all(isinstance(i, int) and 0 <= i < n_layers for i in layers)
    if not in_range or len(set(layers)) != len(layers) or len(layers) != spec["k"]:
        raise DropSpecError(f"drop spec {where}: layers {layers} do not give k={spec['k']} distinct "
                            f"indices in 0..{n_layers - 1}")
