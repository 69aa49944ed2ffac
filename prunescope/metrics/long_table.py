"""From probe rows to the metrics table: the model's output head, and the long-format DataFrame.

One output row per (probe row, space, temperature, metric), with the columns of :data:`COLUMNS`.

Temperature: metrics that do not depend on T are stored once, with ``temperature`` null (NaN in pandas,
null in Parquet and DuckDB): every embedding and logit metric, and in the probability and subspace spaces
``var_uniform``, ``rms_dz`` (logit units, Δz not divided by T) and ``top1_agree`` / ``argmax_agree`` (the
argmax of z/T is that of z). The other probability and subspace metrics (``cos``, ``one_minus_cos``,
``kl``, ``kl_estimate``, ``cos_estimate``, ``total_variation``, ``logp_ref_{k}``, ``logp_var_{k}``) carry
their T, one row per temperature. Option sets may be ragged (2-5 options per prompt): a prompt has
``logp_ref_{k}`` / ``logp_var_{k}`` rows only for its own options k = 0 .. K-1. A query at one T selects
``temperature IS NULL OR temperature = T``; the paper's Fig 4 (mean and min–max cosine per layer in the
three spaces at T = 1) is then one query::

    SELECT layer, space, avg(value) AS mean, min(value) AS lo, max(value) AS hi
    FROM 'results/*/dense/metrics/layerwise-*.parquet'
    WHERE mode = 'drop' AND sublayer = 'attn' AND metric = 'cos'
      AND space IN ('embedding', 'logit', 'probability') AND (temperature IS NULL OR temperature = 1.0)
    GROUP BY layer, space ORDER BY layer, space

:data:`CONVENTIONS` states what the numbers mean, for the Parquet metadata of the metrics stage.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from torch import nn

from prunescope.adapter import model_parts
from prunescope.metrics.spaces import Head, RowMetrics

KEY_COLUMNS = ("model", "variant", "probe", "probe_set", "prompt_id", "step", "layer", "sublayer", "mode")
COLUMNS = (*KEY_COLUMNS, "temperature", "space", "metric", "value")

CONVENTIONS = {
    "reference": "h_ref is the dense model's row; every metric measures h_var against it",
    "kl_direction": "KL(p || q) with p = softmax(z_ref/T) (dense), q = softmax(z_var/T); natural log",
    "estimates": "kl_estimate = Var_p(dz)/(2T^2), cos_estimate = Var_r(dz)/(2T^2), r = p^2/sum(p^2), "
    "both weighted by the dense p; theorem1_estimate = |d_perp|^2/(2|ref|^2)",
    "decomposition": "para_rel = |d_par|/|ref|, orth_rel_sq = |d_perp|^2/|ref|^2 (squared), d = var - ref "
    "split along ref",
    "logit_units": "var_uniform (variance of dz over the vocabulary) and rms_dz = sqrt(mean dz^2) are in logit "
    "units, not divided by T; rms_dz is not invariant to a constant shift of dz",
    "subspace": "softmax renormalised over each prompt's own option tokens; logp_ref_k / logp_var_k are "
    "full-vocabulary log-probabilities at T of option k, present only for the options a prompt has",
    "temperature": "null for metrics that do not depend on T: all embedding and logit metrics, and "
    "var_uniform, rms_dz, top1_agree (probability) and var_uniform, rms_dz, argmax_agree (subspace)",
    "precision": "fp32",
}


def head_from_model(model: nn.Module, apply_final_norm: bool = False) -> Head:
    """The output head of ``model`` in fp32, optionally preceded by the final norm.

    The paper applies the LM head directly to intermediate hidden states, without the final norm
    (``apply_final_norm=False``, the default). Rows that are already post-norm (the final hidden state
    of the generation and subspace probes) must use ``False`` too. Logit scaling and soft-capping are
    taken from the model config when the architecture defines them.
    """
    parts = model_parts(model)
    weight = parts.head.weight.detach().float()
    bias = parts.head.bias.detach().float() if parts.head.bias is not None else None
    norm = None
    if apply_final_norm:
        norm = copy.deepcopy(parts.final_norm).float().eval().requires_grad_(False)
    return head_from_parts(weight, bias, norm, model.config)


def head_from_parts(weight: torch.Tensor, bias: torch.Tensor | None, norm: nn.Module | None, config) -> Head:
    """A :class:`Head` of fp32 ``weight``/``bias``/``norm`` with the logit scaling and soft-capping of ``config``.

    Shared by :func:`head_from_model` and :func:`prunescope.metrics.head_loading.load_head`.
    """
    scale = float(getattr(config, "logit_scale", None) or 1.0)  # Cohere: logits * logit_scale
    if getattr(config, "logits_scaling", None):  # Granite: logits / logits_scaling
        scale /= float(config.logits_scaling)
    softcap = getattr(config, "final_logit_softcapping", None)  # Gemma 2
    return Head(weight, bias, norm, scale, float(softcap) if softcap else None)


def long_table(keys: pd.DataFrame, metrics: RowMetrics) -> pd.DataFrame:
    """The long-format metrics table: ``keys`` (one row per metrics row, :data:`KEY_COLUMNS`) × metrics.

    Only the key columns of ``keys`` are carried over. Rows are ordered by (space, temperature, metric),
    then by the order of ``keys``; a T-independent metric has one row per key row (temperature null), and
    ``logp_ref_{k}`` / ``logp_var_{k}`` rows exist only for key rows with an option k.
    """
    missing = [c for c in KEY_COLUMNS if c not in keys.columns]
    if missing:
        raise ValueError(f"keys lack column(s) {missing}; required: {list(KEY_COLUMNS)}")
    blocks = list(metrics.blocks())
    n = len(keys)
    sizes = {values.shape[0] for *_, values in blocks}
    if sizes != {n}:
        raise ValueError(f"keys have {n} rows but the metrics have {sorted(sizes)} rows")
    every_row = np.arange(n)
    rows, values = [], []
    for space, _, name, block in blocks:
        present = metrics.present(space, name)
        if present is None:
            rows.append(every_row)
            values.append(block.detach().reshape(-1))
        else:
            present = present.cpu()
            rows.append(every_row[present.numpy()])
            values.append(block.detach().cpu()[present])
    counts = [len(r) for r in rows]
    base = keys.loc[:, list(KEY_COLUMNS)].reset_index(drop=True)
    table = base.take(np.concatenate(rows) if rows else every_row[:0]).reset_index(drop=True)
    table["temperature"] = np.repeat([np.nan if t is None else float(t) for _, t, _, _ in blocks], counts)
    table["space"] = np.repeat([space for space, *_ in blocks], counts)
    table["metric"] = np.repeat([name for _, _, name, _ in blocks], counts)
    table["value"] = torch.cat([v.cpu() for v in values]).double().numpy() if values else np.empty(0)
    return table
