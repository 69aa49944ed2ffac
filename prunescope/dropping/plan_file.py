"""``drop_spec.json``: a drop plan with its provenance, as the drop_spec rule writes it and loading reads it.

The file holds one *plan record*: the model and variant, the unit, k and the dropped layers, each dropped
layer's similarity when it was chosen, how it was chosen, the calibration settings, and a fingerprint of
the model's architecture. A record applied to another model (other fingerprint) is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from prunescope.dropping.plan import DropPlan, DropPlanError, check_selection, check_unit
from prunescope.io import write_json
from prunescope.variants import DropSpec, parse_variant

PLAN_FILE = "drop_spec.json"  # in results/{model}/{variant}/
RECORD_FORMAT = "prunescope.drop_spec/1"
FINGERPRINT_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "vocab_size")
_RECORD_KEYS = ("format", "model", "variant", "unit", "k", "layers", "similarity", "selection", "calibration",
                "fingerprint")


def model_fingerprint(model_or_config, model_key: str | None = None) -> dict[str, Any]:
    """What a plan record must match: the architecture fields of the config, plus the config key of the model."""
    config = getattr(model_or_config, "config", model_or_config)
    fingerprint = {key: getattr(config, key, None) for key in FINGERPRINT_KEYS}
    fingerprint["model"] = model_key
    return fingerprint


def make_plan_record(model_name: str, variant: str, unit: str, k: int, layers, scores,
                     calibration_settings: Mapping[str, Any], fingerprint: Mapping[str, Any],
                     selection: str = "one_shot") -> dict[str, Any]:
    """The content of drop_spec.json. ``scores``: a :func:`layer_scores` table or a {layer: similarity} mapping.

    ``fingerprint`` is :func:`model_fingerprint` of the model the layers were chosen on.
    """
    check_unit(unit)
    parsed = parse_variant(variant)
    if not isinstance(parsed, DropSpec) or (parsed.unit, parsed.k) != (unit, k):
        raise DropPlanError(f"variant {variant!r} does not name a drop of k={k} {unit!r} units "
                            f"(expected 'drop-{unit}-{k}')")
    check_selection(selection)
    layers = sorted(int(i) for i in layers)
    if len(set(layers)) != k:
        raise DropPlanError(f"variant {variant!r} needs {k} distinct layers, got {layers}")
    if isinstance(scores, pd.DataFrame):
        rows = scores[scores["unit"] == unit]
        scores = dict(zip(rows["layer"].astype(int), rows["similarity"].astype(float)))
    missing = [i for i in layers if i not in scores]
    if missing:
        raise DropPlanError(f"no {unit} similarity score for layers {missing}")
    return {
        "format": RECORD_FORMAT,
        "model": model_name,
        "variant": variant,
        "unit": unit,
        "k": k,
        "layers": layers,
        "similarity": {str(i): float(scores[i]) for i in layers},
        "selection": selection,
        "calibration": dict(calibration_settings),
        "fingerprint": dict(fingerprint),
    }


def plan_from_record(record: Mapping[str, Any]) -> DropPlan:
    return DropPlan.of(record["unit"], record["layers"])


def check_fingerprint(record: Mapping[str, Any], model_or_config, model_key: str | None = None) -> None:
    """Raise :class:`DropPlanError` if ``record`` was made for a different model.

    The architecture fields always have to agree; the model key only when the caller passes one.
    """
    expected = model_fingerprint(model_or_config, model_key)
    recorded = record["fingerprint"]
    keys = list(FINGERPRINT_KEYS) + (["model"] if model_key is not None else [])
    diffs = [f"{key}: recorded {recorded.get(key)!r} vs model {expected[key]!r}" for key in keys
             if recorded.get(key) != expected[key]]
    if diffs:
        raise DropPlanError(
            f"drop plan {record.get('variant')!r} was made for model {recorded.get('model')!r}, "
            f"not this one ({'; '.join(diffs)})"
        )


def write_plan_file(record: Mapping[str, Any], path: str | os.PathLike) -> None:
    _validate_record(record, path)
    write_json(record, path)


def read_plan_file(path: str | os.PathLike) -> dict[str, Any]:
    """The plan record in ``path``, validated (format, keys, unit, layers within the fingerprint's layers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"drop plan file {path} does not exist (written by the drop_spec rule)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DropPlanError(f"drop plan file {path} is not valid JSON: {err}") from None
    _validate_record(record, path)
    return record


def read_plan(path: str | os.PathLike, variant: str, model_or_config, model_key: str | None = None) -> DropPlan:
    """The plan in drop plan file ``path``, after checking it is for ``variant`` and for this model.

    ``model_key`` (the config key of the model), when given, must match the recorded one too.
    """
    record = read_plan_file(path)
    if record["variant"] != variant:
        raise DropPlanError(f"{path} describes variant {record['variant']!r}, not {variant!r}")
    check_fingerprint(record, model_or_config, model_key)
    return plan_from_record(record)


def _validate_record(record: Mapping[str, Any], where) -> None:
    if not isinstance(record, Mapping):
        raise DropPlanError(f"drop plan file {where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in _RECORD_KEYS if key not in record]
    if missing:
        raise DropPlanError(f"drop plan file {where}: missing keys {missing}")
    if record["format"] != RECORD_FORMAT:
        raise DropPlanError(f"drop plan file {where}: format {record['format']!r}, expected {RECORD_FORMAT!r}")
    check_unit(record["unit"])
    check_selection(record["selection"])
    fingerprint = record["fingerprint"]
    n_layers = (fingerprint.get("num_hidden_layers") if isinstance(fingerprint, Mapping) else None) or 0
    layers = record["layers"]
    in_range = all(isinstance(i, int) and 0 <= i < n_layers for i in layers)
    if not in_range or len(set(layers)) != len(layers) or len(layers) != record["k"]:
        raise DropPlanError(f"drop plan file {where}: layers {layers} do not give k={record['k']} distinct "
                            f"indices in 0..{n_layers - 1}")
