"""Metrics that do not depend on T are stored once, with temperature null; the others once per T."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from prunescope.metrics import (
    PROBABILITY_METRICS,
    SUBSPACE_METRICS,
    TEMPERATURE_FREE,
    VECTOR_METRICS,
    Head,
    compute_metrics,
    long_table,
)

TEMPERATURES = (0.3, 0.7, 1.0, 1.3)


def table_and_logits(n=10, vocab=256, dim=16, seed=2):
    g = np.random.default_rng(seed)
    h_ref = g.normal(size=(n, dim)).astype(np.float32)
    h_var = (h_ref + 0.3 * g.normal(size=(n, dim))).astype(np.float32)
    weight = (g.normal(size=(vocab, dim)) / np.sqrt(dim) * 3).astype(np.float32)
    ids = torch.tensor([[3, 50, 7, 200], [9, 1, -1, -1]] * (n // 2))
    metrics = compute_metrics(
        torch.from_numpy(h_ref), torch.from_numpy(h_var), Head(torch.from_numpy(weight)), TEMPERATURES, ids
    )
    keys = pd.DataFrame([dict(model="m", variant="v", probe="subspace", probe_set="mc", prompt_id=f"q{i}", step=0,
                              layer=-1, sublayer="final", mode="subspace") for i in range(n)])  # fmt: skip
    z, z_var = h_ref.astype(np.float64) @ weight.T, h_var.astype(np.float64) @ weight.T
    return long_table(keys, metrics), z, z_var, ids.numpy()


def test_t_independent_metrics_once_per_row_with_null_temperature():
    table, z, _, ids = table_and_logits()
    n = len(z)
    counts = table.groupby(["space", "metric"], dropna=False).agg(rows=("value", "size"), nulls=(
        "temperature", lambda t: int(t.isna().sum())), temps=("temperature", lambda t: sorted(set(t.dropna()))))
    for space in ("probability", "subspace"):
        names = PROBABILITY_METRICS if space == "probability" else SUBSPACE_METRICS
        for name in names:
            row = counts.loc[(space, name)]
            if name in TEMPERATURE_FREE[space]:
                assert (row.rows, row.nulls, row.temps) == (n, n, []), (space, name)
            else:
                assert (row.rows, row.nulls, row.temps) == (n * len(TEMPERATURES), 0, list(TEMPERATURES)), name
    for space in ("embedding", "logit"):
        for name in VECTOR_METRICS:
            assert (counts.loc[(space, name)].rows, counts.loc[(space, name)].nulls) == (n, n)
    # Each row has one value per (space, temperature, metric).
    assert not table.duplicated(["prompt_id", "space", "temperature", "metric"]).any()


def test_t_independent_values_against_float64():
    table, z, z_var, ids = table_and_logits()
    dz = z_var - z
    free = table[table.temperature.isna()].set_index(["space", "metric", "prompt_id"])["value"]
    for i in range(len(z)):
        row_ids = ids[i][ids[i] >= 0]
        for space, d, top_ref, top_var in (
            ("probability", dz[i], z[i].argmax(), z_var[i].argmax()),
            ("subspace", dz[i][row_ids], z[i][row_ids].argmax(), z_var[i][row_ids].argmax()),
        ):
            agree = "top1_agree" if space == "probability" else "argmax_agree"
            assert free[(space, "var_uniform", f"q{i}")] == pytest.approx(d.var(), rel=2e-4)
            assert free[(space, "rms_dz", f"q{i}")] == pytest.approx(np.sqrt((d**2).mean()), rel=1e-5)
            assert free[(space, agree, f"q{i}")] == float(top_ref == top_var)
    assert set(free.index.get_level_values("metric")) >= {"var_uniform", "rms_dz", "top1_agree", "argmax_agree"}


def test_t_dependent_values_against_float64_at_each_temperature():
    table, z, z_var, _ = table_and_logits()
    per_t = table[(table.space == "probability") & table.temperature.notna()]
    kl = per_t[per_t.metric == "kl"].set_index(["temperature", "prompt_id"])["value"]
    for t in TEMPERATURES:
        log_p = z / t - np.log(np.exp(z / t - (z / t).max(-1, keepdims=True)).sum(-1, keepdims=True)) - (
            z / t).max(-1, keepdims=True)  # fmt: skip
        log_q = z_var / t - np.log(np.exp(z_var / t - (z_var / t).max(-1, keepdims=True)).sum(-1, keepdims=True)) - (
            z_var / t).max(-1, keepdims=True)  # fmt: skip
        expected = (np.exp(log_p) * (log_p - log_q)).sum(-1)
        got = np.array([kl[(t, f"q{i}")] for i in range(len(z))])
        np.testing.assert_allclose(got, expected, rtol=2e-3)
