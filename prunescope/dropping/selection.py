"""Which units to drop, chosen from layer similarity scores.

Selection follows the published criteria: drop the k units whose output is most similar to their input
(highest cosine similarity, i.e. lowest importance 1 - s). For attention / MLP sublayers this is
LLM-Drop (He et al., "What matters in transformers? Not all attention is needed"; TMLR 2026, "Uncovering
the redundancy in transformers via a unified study of layer dropping"); for blocks it is ShortGPT's Block
Influence (Men et al., "ShortGPT: layers in large language models are more redundant than you expect",
2025). Selection is one-shot on the dense scores by default; ``iterative`` drops one unit, rescores the
dropped model and repeats (LLM-Drop's ``layer_drop_iterative``). Ties go to the lower layer index.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from prunescope.adapter import model_parts
from prunescope.dropping.plan import DropPlan, DropPlanError, check_selection, check_unit
from prunescope.dropping.scores import layer_scores


def select_drops(scores_df: pd.DataFrame, unit: str, k: int, selection: str = "one_shot",
                 exclude=()) -> list[int]:
    """The k layers of ``unit`` with the highest similarity (ties: lower index), sorted ascending.

    ``scores_df`` is :func:`prunescope.dropping.scores.layer_scores` output; ``exclude`` lists layers
    that may not be chosen (already dropped, during iterative selection).
    """
    check_unit(unit)
    if selection == "iterative":
        raise DropPlanError("iterative selection rescores the model after every drop; "
                            "call iterative_drops(model, calibration_ids, unit, k, device)")
    check_selection(selection)
    missing = {"unit", "layer", "similarity"} - set(scores_df.columns)
    if missing:
        raise DropPlanError(f"scores table lacks columns {sorted(missing)}")
    rows = scores_df[scores_df["unit"] == unit]
    n_layers = len(rows)
    if n_layers == 0 or sorted(rows["layer"]) != list(range(n_layers)):
        raise DropPlanError(f"scores table has no complete set of {unit!r} rows (layers 0..n-1 once each)")
    if rows["similarity"].isna().any():
        raise DropPlanError(f"scores table has NaN similarities for unit {unit!r}")
    candidates = rows[~rows["layer"].isin(list(exclude))]
    _check_k(unit, k, len(candidates), n_layers)
    ranked = candidates.sort_values(["similarity", "layer"], ascending=[False, True], kind="stable")
    return sorted(int(i) for i in ranked["layer"].iloc[:k])


def iterative_drops(model: nn.Module, calibration_ids: torch.Tensor, unit: str, k: int, device="cpu",
                    batch_size: int = 1) -> tuple[list[int], dict[int, float]]:
    """Drop one unit at a time, rescoring the already-dropped model before each choice.

    Returns the dropped layers in the order chosen and each one's similarity at the round it was chosen.
    """
    check_unit(unit)
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


def _check_k(unit: str, k: int, n_available: int, n_layers: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise DropPlanError(f"k={k!r} must be a positive integer (number of {unit} units to drop)")
    if k > n_available:
        raise DropPlanError(
            f"k={k} exceeds the {n_available} {unit} units available to drop "
            f"(the model has {n_layers} layers)"
        )
