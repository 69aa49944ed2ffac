"""Ragged option sets (2-5 options per prompt): each row's subspace metrics over its own options only,
against a float64 computation row by row; option log-probs only for the options a row has."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from prunescope.metrics import OPTION_PAD, Head, compute_metrics, long_table
from prunescope.metrics.job import option_matrix, probe_metrics

VOCAB, DIM = 300, 24
COUNTS = [2, 4, 5, 2, 3, 5, 4, 2, 5, 4, 3]  # PIQA 2, ARC 3-5, HellaSwag 4, shuffled


def rows(n=len(COUNTS), seed=0):
    g = np.random.default_rng(seed)
    h_ref = g.normal(size=(n, DIM)).astype(np.float32)
    h_var = (h_ref + np.geomspace(1e-3, 0.5, n)[:, None] * g.normal(size=(n, DIM))).astype(np.float32)
    weight = (g.normal(size=(VOCAB, DIM)) / np.sqrt(DIM) * 3).astype(np.float32)
    options = [g.choice(VOCAB, size=k, replace=False) for k in COUNTS[:n]]
    return h_ref, h_var, weight, options


def padded(options):
    width = max(len(o) for o in options)
    return torch.tensor([list(o) + [OPTION_PAD] * (width - len(o)) for o in options])


def expected_row(z, z_var, ids, t):
    """The subspace metrics of one row in float64, from its own options only."""
    sub, sub_var = z[ids] / t, z_var[ids] / t
    p, q = np.exp(sub - sub.max()), np.exp(sub_var - sub_var.max())
    p, q = p / p.sum(), q / q.sum()
    dz = (z_var - z)[ids]
    r = p**2 / (p**2).sum()
    cos = (p * q).sum() / np.sqrt((p * p).sum() * (q * q).sum())
    log_norm, log_norm_var = (np.log(np.exp(v / t - (v / t).max()).sum()) + (v / t).max() for v in (z, z_var))
    metrics = {
        "kl": (p * np.log(p / q)).sum(),
        "cos": cos,
        "one_minus_cos": 1 - cos,
        "total_variation": 0.5 * np.abs(p - q).sum(),
        "kl_estimate": (p * (dz - (p * dz).sum()) ** 2).sum() / (2 * t * t),
        "cos_estimate": (r * (dz - (r * dz).sum()) ** 2).sum() / (2 * t * t),
        "var_uniform": dz.var(),
        "rms_dz": np.sqrt((dz**2).mean()),
        "argmax_agree": float(p.argmax() == q.argmax()),
    }
    for k, i in enumerate(ids):
        metrics[f"logp_ref_{k}"] = z[i] / t - log_norm
        metrics[f"logp_var_{k}"] = z_var[i] / t - log_norm_var
    return metrics


@pytest.mark.parametrize("temperature", [0.6, 1.0])
def test_each_row_uses_its_own_options(temperature):
    h_ref, h_var, weight, options = rows()
    got = compute_metrics(
        torch.from_numpy(h_ref), torch.from_numpy(h_var), Head(torch.from_numpy(weight)),
        temperatures=[temperature], option_ids=padded(options), chunk_rows=4,
    )  # fmt: skip
    z, z_var = h_ref.astype(np.float64) @ weight.T, h_var.astype(np.float64) @ weight.T
    sub = got.subspace[temperature]
    for i, ids in enumerate(options):
        for name, value in expected_row(z[i], z_var[i], ids, temperature).items():
            assert float(sub[name][i]) == pytest.approx(value, rel=2e-3, abs=1e-9), (i, name)
        for k in range(len(ids), 5):  # absent options: NaN in the tensors, absent from the table
            assert torch.isnan(sub[f"logp_ref_{k}"][i]) and torch.isnan(sub[f"logp_var_{k}"][i])
            assert not bool(got.present("subspace", f"logp_ref_{k}")[i])
    assert got.option_counts.tolist() == COUNTS


def test_a_row_does_not_depend_on_the_other_rows_option_counts():
    h_ref, h_var, weight, options = rows()
    head = Head(torch.from_numpy(weight))
    mixed = compute_metrics(torch.from_numpy(h_ref), torch.from_numpy(h_var), head, option_ids=padded(options))
    for i in (0, 1, 2):  # 2, 4 and 5 options, each alone in its batch with no padding
        alone = compute_metrics(
            torch.from_numpy(h_ref[i : i + 1]), torch.from_numpy(h_var[i : i + 1]), head,
            option_ids=torch.tensor([list(options[i])]),
        )  # fmt: skip
        for name, values in alone.subspace[1.0].items():
            torch.testing.assert_close(mixed.subspace[1.0][name][i], values[0], rtol=1e-5, atol=1e-7, msg=name)


def test_long_table_has_option_log_probs_only_for_present_options():
    h_ref, h_var, weight, options = rows()
    metrics = compute_metrics(
        torch.from_numpy(h_ref), torch.from_numpy(h_var), Head(torch.from_numpy(weight)),
        temperatures=[0.5, 1.0], option_ids=padded(options),
    )  # fmt: skip
    keys = pd.DataFrame([dict(model="m", variant="v", probe="subspace", probe_set="mc", prompt_id=f"q{i}", step=0,
                              layer=-1, sublayer="final", mode="subspace") for i in range(len(options))])  # fmt: skip
    table = long_table(keys, metrics)
    assert not table["value"].isna().any()
    logp = table[table.metric.str.startswith("logp_")]
    per_prompt = logp.groupby("prompt_id").size()
    assert {p: int(n) for p, n in per_prompt.items()} == {f"q{i}": 2 * 2 * k for i, k in enumerate(COUNTS)}
    for i, k in enumerate(COUNTS):
        have = set(logp.loc[logp.prompt_id == f"q{i}", "metric"])
        assert have == {f"logp_{side}_{j}" for side in ("ref", "var") for j in range(k)}
    value = logp[(logp.prompt_id == "q2") & (logp.metric == "logp_var_4") & (logp.temperature == 0.5)]["value"]
    assert value.item() == pytest.approx(float(metrics.subspace[0.5]["logp_var_4"][2]))


def test_option_errors_name_the_row():
    h_ref, h_var, weight, options = (torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in rows(n=3))
    head = Head(weight)
    with pytest.raises(ValueError, match="at least 2 options per row; fewer in row 1"):
        compute_metrics(h_ref, h_var, head, option_ids=torch.tensor([[1, 2, -1], [3, -1, -1], [4, 5, 6]]))
    with pytest.raises(ValueError, match="option after the pad -1 in row 2"):
        compute_metrics(h_ref, h_var, head, option_ids=torch.tensor([[1, 2, -1], [3, 4, 5], [4, -1, 6]]))
    with pytest.raises(ValueError, match="repeat a token id in row 0"):
        compute_metrics(h_ref, h_var, head, option_ids=torch.tensor([[1, 1, -1], [3, 4, 5], [4, 5, 6]]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 300\) \(or -1 after a row's last option\)"):
        compute_metrics(h_ref, h_var, head, option_ids=torch.tensor([[1, 2, -1], [3, 4, 300], [4, 5, 6]]))


def test_option_matrix_pads_a_ragged_arrow_column():
    column = pa.chunked_array([[[5, 6], [7, 8, 9, 10]], [[11, 12, 13, 14, 15], [1, 2, 3]]], pa.list_(pa.int64()))
    expected = [[5, 6, -1, -1, -1], [7, 8, 9, 10, -1], [11, 12, 13, 14, 15], [1, 2, 3, -1, -1]]
    assert option_matrix(column).tolist() == expected
    assert option_matrix(column.chunk(1).slice(1)).tolist() == [[1, 2, 3]]


def test_probe_metrics_reads_ragged_option_tokens(tmp_path):
    h_ref, h_var, weight, options = rows()
    n = len(options)
    probe = pa.table({
        "model": ["m"] * n, "variant": ["v"] * n, "probe": ["subspace"] * n, "probe_set": ["mc"] * n,
        "prompt_id": [f"q{i}" for i in range(n)], "step": pa.array([0] * n, pa.int32()),
        "layer": pa.array([-1] * n, pa.int32()), "sublayer": ["final"] * n, "mode": ["subspace"] * n,
        "h_ref": pa.array(list(h_ref), pa.list_(pa.float32())), "h_var": pa.array(list(h_var), pa.list_(pa.float32())),
        "option_tokens": pa.array([list(map(int, o)) for o in options], pa.list_(pa.int64())),
    })  # fmt: skip
    pq.write_table(probe, tmp_path / "subspace-mc.parquet")
    frame = probe_metrics(tmp_path / "subspace-mc.parquet", Head(torch.from_numpy(weight)), [1.0], chunk_rows=4)
    z, z_var = h_ref.astype(np.float64) @ weight.T, h_var.astype(np.float64) @ weight.T
    sub = frame[frame.space == "subspace"].set_index(["prompt_id", "metric"])["value"]
    for i, ids in enumerate(options):  # batches of 4 rows hold 2 to 5 options each
        for name, value in expected_row(z[i], z_var[i], ids, 1.0).items():
            assert sub[(f"q{i}", name)] == pytest.approx(value, rel=2e-3, abs=1e-9), (i, name)
        assert (f"q{i}", f"logp_ref_{len(ids)}") not in sub.index
