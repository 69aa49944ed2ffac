"""Metrics against independent computations: hand-worked values, float64 evaluation, theorem limits."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunescope.metrics import (
    COLUMNS,
    KEY_COLUMNS,
    PROBABILITY_METRICS,
    SUBSPACE_METRICS,
    TEMPERATURE_FREE,
    VECTOR_METRICS,
    Head,
    compute_metrics,
    head_from_model,
    long_table,
    probability_metrics,
    subspace_metrics,
    vector_metrics,
)
from tests.conftest import tiny_model

LN2, LN3 = math.log(2), math.log(3)


def scalars(metrics):
    return {k: float(v.item()) for k, v in metrics.items()}


# --- hand-worked examples -------------------------------------------------------------------------


def test_vector_metrics_hand_worked():
    # ref = (1, 0, 0), var = (2, 1, 0): Δ = (1, 1, 0) = parallel (1, 0, 0) + orthogonal (0, 1, 0).
    m = scalars(vector_metrics(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])))
    assert m["cos"] == pytest.approx(2 / math.sqrt(5), rel=1e-6)
    assert m["one_minus_cos"] == pytest.approx(1 - 2 / math.sqrt(5), rel=1e-6)
    assert m["para_rel"] == pytest.approx(1.0, rel=1e-6)
    assert m["orth_rel_sq"] == pytest.approx(1.0, rel=1e-6)
    assert m["theorem1_estimate"] == pytest.approx(0.5, rel=1e-6)
    # ref = (3, 4), Δ = 0.1·(−4, 3) is purely orthogonal: ‖Δ⊥‖² = 0.25, ‖ref‖² = 25, cos = 5/√25.25.
    m = scalars(vector_metrics(torch.tensor([[3.0, 4.0]]), torch.tensor([[2.6, 4.3]])))
    assert m["para_rel"] == pytest.approx(0.0, abs=1e-7)
    assert m["orth_rel_sq"] == pytest.approx(0.01, rel=1e-5)
    assert m["theorem1_estimate"] == pytest.approx(0.005, rel=1e-5)
    assert m["one_minus_cos"] == pytest.approx(1 - 5 / math.sqrt(25.25), rel=1e-5)
    # Opposite vectors: cos = −1, 1 − cos = 2, Δ = −2·ref is all parallel.
    m = scalars(vector_metrics(torch.tensor([[1.0, 2.0]]), torch.tensor([[-1.0, -2.0]])))
    assert (m["cos"], m["one_minus_cos"], m["para_rel"], m["orth_rel_sq"]) == pytest.approx((-1, 2, 2, 0))


def test_probability_metrics_hand_worked():
    # p = (2/3, 1/3), q = (1/3, 2/3); Δz = (−ln2, ln2).
    m = scalars(probability_metrics(torch.tensor([[LN2, 0.0]]), torch.tensor([[0.0, LN2]]), 1.0))
    assert m["cos"] == pytest.approx(0.8, rel=1e-6)  # (2/9 + 2/9) / (5/9)
    assert m["one_minus_cos"] == pytest.approx(0.2, rel=1e-5)
    assert m["kl"] == pytest.approx(LN2 / 3, rel=1e-6)  # 2/3·ln2 + 1/3·ln(1/2)
    assert m["total_variation"] == pytest.approx(1 / 3, rel=1e-6)
    assert m["kl_estimate"] == pytest.approx(4 / 9 * LN2**2, rel=1e-6)  # Var_p = (ln2)² − (ln2/3)²; /2
    assert m["cos_estimate"] == pytest.approx(8 / 25 * LN2**2, rel=1e-6)  # r = (4/5, 1/5): Var_r = 16/25 (ln2)²
    assert m["var_uniform"] == pytest.approx(LN2**2, rel=1e-6)
    assert m["rms_dz"] == pytest.approx(LN2, rel=1e-6)
    assert m["top1_agree"] == 0.0
    assert set(m) == set(PROBABILITY_METRICS)


def test_temperature_divides_logits_and_estimates():
    # At T = 2 the logits (2 ln2, 0) give the same p, q as above; Δz doubles, Var/(2T²) is unchanged.
    m = scalars(probability_metrics(torch.tensor([[2 * LN2, 0.0]]), torch.tensor([[0.0, 2 * LN2]]), 2.0))
    assert m["kl"] == pytest.approx(LN2 / 3, rel=1e-6)
    assert m["kl_estimate"] == pytest.approx(4 / 9 * LN2**2, rel=1e-6)
    assert m["var_uniform"] == pytest.approx(4 * LN2**2, rel=1e-6)  # logit units, independent of T


def test_probability_metrics_where_q_over_p_overflows_fp32():
    # p = (1/2, e^-100/…, 1/2): the middle p is subnormal; q is uniform, so q/p there is beyond fp32.
    m = scalars(probability_metrics(torch.tensor([[0.0, -100.0, 0.0]]), torch.zeros(1, 3), 1.0))
    assert m["kl"] == pytest.approx(math.log(1.5), rel=1e-5)  # 2·½·ln(½ / ⅓); the middle term is ~1e-42
    assert m["total_variation"] == pytest.approx(1 / 3, rel=1e-5)  # ½(⅙ + ⅓ + ⅙)
    assert m["cos"] == pytest.approx(math.sqrt(6) / 3, rel=1e-5)  # (⅓) / (‖p‖ = 1/√2 · ‖q‖ = 1/√3)


def test_subspace_metrics_hand_worked():
    # Vocabulary of 4, options are tokens 1 and 3; token 0 holds most of the full-vocabulary mass.
    z_ref = torch.tensor([[10.0, LN2, 0.0, 0.0]])
    z_var = torch.tensor([[10.0, 0.0, 0.0, LN2]])
    m = scalars(subspace_metrics(z_ref, z_var, torch.tensor([1, 3]), 1.0))
    assert m["kl"] == pytest.approx(LN2 / 3, rel=1e-5)  # renormalised: (2/3, 1/3) vs (1/3, 2/3)
    assert m["cos"] == pytest.approx(0.8, rel=1e-5)
    assert m["total_variation"] == pytest.approx(1 / 3, rel=1e-5)
    assert m["argmax_agree"] == 0.0
    log_norm = math.log(math.exp(10) + 4)  # both rows: e^10 + 2 + 1 + 1
    assert m["logp_ref_0"] == pytest.approx(LN2 - log_norm, rel=1e-6)
    assert m["logp_ref_1"] == pytest.approx(-log_norm, rel=1e-6)
    assert m["logp_var_0"] == pytest.approx(-log_norm, rel=1e-6)
    assert m["logp_var_1"] == pytest.approx(LN2 - log_norm, rel=1e-6)
    assert set(m) == set(SUBSPACE_METRICS) | {"logp_ref_0", "logp_ref_1", "logp_var_0", "logp_var_1"}


def test_head_scale_and_softcap_hand_worked():
    head = Head(torch.eye(2), bias=torch.tensor([1.0, 0.0]), logit_scale=0.5, softcap=1.5)
    z = head(torch.tensor([[2.0, -4.0]]))
    expected = [1.5 * math.tanh(0.5 * 3.0 / 1.5), 1.5 * math.tanh(0.5 * -4.0 / 1.5)]
    assert z[0].tolist() == pytest.approx(expected, rel=1e-6)


# --- against float64 evaluation of the definitions ------------------------------------------------


def softmax64(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cosine64(a, b):
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def decomposition64(a, b):
    """(‖Δ∥‖/‖a‖, ‖Δ⊥‖²/‖a‖²) with Δ = b − a projected onto a."""
    d = b - a
    unit = a / np.linalg.norm(a, axis=-1, keepdims=True)
    par = (d * unit).sum(-1, keepdims=True) * unit
    norm_sq = (a * a).sum(-1)
    return np.linalg.norm(par, axis=-1) / np.sqrt(norm_sq), ((d - par) ** 2).sum(-1) / norm_sq


def weighted_var64(x, w):
    w = w / w.sum(-1, keepdims=True)
    mean = (w * x).sum(-1, keepdims=True)
    return (w * (x - mean) ** 2).sum(-1)


def random_rows(n=24, d=32, vocab=500, seed=0):
    """Rows whose perturbation spans 1e-3 .. 1 of the reference norm, so every regime is checked."""
    g = np.random.default_rng(seed)
    h_ref = g.normal(size=(n, d)).astype(np.float32)
    scales = np.geomspace(1e-3, 1.0, n)[:, None]
    h_var = (h_ref + scales * g.normal(size=(n, d)) * np.sqrt(1 / d) * 3).astype(np.float32)
    weight = (g.normal(size=(vocab, d)) / np.sqrt(d) * 2).astype(np.float32)
    bias = g.normal(size=vocab).astype(np.float32)
    return h_ref, h_var, weight, bias


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.3])
def test_all_spaces_against_float64(temperature):
    h_ref, h_var, weight, bias = random_rows()
    got = compute_metrics(
        torch.from_numpy(h_ref), torch.from_numpy(h_var), Head(torch.from_numpy(weight), torch.from_numpy(bias)),
        temperatures=[temperature], chunk_rows=5,
    )  # fmt: skip
    h, hv, w, b = (x.astype(np.float64) for x in (h_ref, h_var, weight, bias))
    z, zv = h @ w.T + b, hv @ w.T + b
    for space, (a, c) in {"embedding": (h, hv), "logit": (z, zv)}.items():
        m = {k: v.numpy() for k, v in getattr(got, space).items()}
        para, orth = decomposition64(a, c)
        np.testing.assert_allclose(m["cos"], cosine64(a, c), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(m["one_minus_cos"], 1 - cosine64(a, c), rtol=2e-3)
        np.testing.assert_allclose(m["para_rel"], para, rtol=2e-3, atol=1e-7)
        np.testing.assert_allclose(m["orth_rel_sq"], orth, rtol=2e-3)
        np.testing.assert_allclose(m["theorem1_estimate"], orth / 2, rtol=2e-3)

    p, q = softmax64(z / temperature), softmax64(zv / temperature)
    log_p = z / temperature - np.log(np.exp(z / temperature).sum(-1, keepdims=True))
    log_q = zv / temperature - np.log(np.exp(zv / temperature).sum(-1, keepdims=True))
    dz = zv - z
    m = {k: v.numpy() for k, v in got.probability[temperature].items()}
    np.testing.assert_allclose(m["kl"], (p * (log_p - log_q)).sum(-1), rtol=2e-3)
    np.testing.assert_allclose(m["cos"], cosine64(p, q), rtol=1e-5)
    np.testing.assert_allclose(m["one_minus_cos"], 1 - cosine64(p, q), rtol=2e-3)
    np.testing.assert_allclose(m["total_variation"], 0.5 * np.abs(p - q).sum(-1), rtol=2e-3)
    np.testing.assert_allclose(m["kl_estimate"], weighted_var64(dz, p) / (2 * temperature**2), rtol=2e-3)
    np.testing.assert_allclose(m["cos_estimate"], weighted_var64(dz, p**2) / (2 * temperature**2), rtol=2e-3)
    np.testing.assert_allclose(m["var_uniform"], dz.var(-1), rtol=2e-3)
    np.testing.assert_allclose(m["rms_dz"], np.sqrt((dz**2).mean(-1)), rtol=1e-4)
    np.testing.assert_array_equal(m["top1_agree"], (z.argmax(-1) == zv.argmax(-1)).astype(np.float32))


def test_kl_of_tiny_deviations_against_float64():
    # KL ≈ 5e-9 here: Σ p (log p − log q) summed in fp32 comes out negative (-4e-8), fp32 expm1(x) − x
    # per term is about 2e-4 off; the series used for small x keeps it near 1e-5.
    g = np.random.default_rng(0)
    z = g.normal(0, 2, (8, 300)).astype(np.float32)
    z_var = (z + 1e-4 * g.normal(0, 1, (8, 300))).astype(np.float32)
    got = probability_metrics(torch.from_numpy(z), torch.from_numpy(z_var), 1.0)["kl"].numpy()
    a, b = z.astype(np.float64), z_var.astype(np.float64)
    log_p = a - np.log(np.exp(a).sum(-1, keepdims=True))
    log_q = b - np.log(np.exp(b).sum(-1, keepdims=True))
    np.testing.assert_allclose(got, (np.exp(log_p) * (log_p - log_q)).sum(-1), rtol=5e-5)


def test_subspace_against_float64_with_per_row_options():
    h_ref, h_var, weight, _ = random_rows(n=12, vocab=200, seed=3)
    g = np.random.default_rng(4)
    ids = np.stack([g.choice(200, size=4, replace=False) for _ in range(12)])
    got = compute_metrics(
        torch.from_numpy(h_ref), torch.from_numpy(h_var), Head(torch.from_numpy(weight)),
        temperatures=[0.7], option_ids=torch.from_numpy(ids), chunk_rows=5,
    ).subspace[0.7]  # fmt: skip
    z, zv = h_ref.astype(np.float64) @ weight.T.astype(np.float64), h_var.astype(np.float64) @ weight.T
    sub, subv = np.take_along_axis(z, ids, 1) / 0.7, np.take_along_axis(zv, ids, 1) / 0.7
    p, q = softmax64(sub), softmax64(subv)
    np.testing.assert_allclose(got["kl"].numpy(), (p * np.log(p / q)).sum(-1), rtol=2e-3, atol=1e-9)
    np.testing.assert_allclose(got["one_minus_cos"].numpy(), 1 - cosine64(p, q), rtol=2e-3, atol=1e-9)
    np.testing.assert_array_equal(got["argmax_agree"].numpy(), (p.argmax(-1) == q.argmax(-1)).astype(np.float32))
    full_log_p = np.log(softmax64(z / 0.7))
    for k in range(4):
        np.testing.assert_allclose(got[f"logp_ref_{k}"].numpy(), full_log_p[np.arange(12), ids[:, k]], rtol=1e-5)


# --- theorem limits (property tests) --------------------------------------------------------------

EPSILONS = (1e-1, 1e-2, 1e-3)
# fp32 resolves a second-order quantity such as KL to about this relative precision at the smallest ε,
# and not at all below about this absolute size (with p nearly one-hot or Δz nearly constant).
FP32_RELATIVE = 2e-3
FP32_ABSOLUTE = 1e-13


@settings(max_examples=60, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    vocab=st.integers(2, 400),
    spread=st.floats(0.1, 4.0),
    temperature=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_probability_estimates_tend_to_truth(seed, vocab, spread, temperature):
    g = np.random.default_rng(seed)
    z = torch.tensor(g.normal(0, spread, (1, vocab)), dtype=torch.float32)
    u = torch.tensor(g.normal(0, 1, (1, vocab)), dtype=torch.float32)
    u_range = float(u.max() - u.min()) / temperature
    for eps in EPSILONS:
        m = probability_metrics(z, z + eps * u, temperature)
        tolerance = 2 * eps * u_range + FP32_RELATIVE  # the neglected cumulants are O(ε·range(Δz)/T)
        for estimate, truth in (("kl_estimate", "kl"), ("cos_estimate", "one_minus_cos")):
            estimate, truth = float(m[estimate]), float(m[truth])
            assert abs(estimate - truth) <= tolerance * truth + FP32_ABSOLUTE, (eps, estimate, truth)


@settings(max_examples=60, deadline=None, database=None)
@given(seed=st.integers(0, 2**32 - 1), dim=st.integers(2, 256), offset=st.floats(-3.0, 3.0))
def test_theorem1_estimate_tends_to_truth(seed, dim, offset):
    g = np.random.default_rng(seed)
    h = torch.tensor(g.normal(offset, 1, (1, dim)), dtype=torch.float32)
    u = torch.tensor(g.normal(0, 1, (1, dim)), dtype=torch.float32)
    for eps in EPSILONS:
        m = vector_metrics(h, h + eps * u)
        # ratio = ‖h'‖²(1 + cos)/(2‖h‖²) = 1 + 2α + O(x²), with |α| = ‖Δh∥‖/‖h‖ <= x = ε‖u‖/‖h‖
        x = eps * float(u.norm() / h.norm())
        tolerance = 2 * x + 2 * x**2 + 1e-4
        assert abs(float(m["theorem1_estimate"] / m["one_minus_cos"]) - 1) <= tolerance, eps


# --- invariances ----------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, database=None)
@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(-20.0, 20.0), temperature=st.sampled_from([0.5, 1.0]))
def test_constant_logit_shift_leaves_probability_metrics_unchanged(seed, shift, temperature):
    g = np.random.default_rng(seed)
    z = torch.tensor(g.normal(0, 2, (3, 64)), dtype=torch.float32)
    z_var = z + torch.tensor(g.normal(0, 0.5, (3, 64)), dtype=torch.float32)
    base = probability_metrics(z, z_var, temperature)
    shifted = probability_metrics(z, z_var + shift, temperature)
    for name in set(PROBABILITY_METRICS) - {"rms_dz"}:
        torch.testing.assert_close(shifted[name], base[name], rtol=1e-3, atol=1e-5, msg=name)
    # rms_dz = sqrt(E Δz²) (the paper's Fig 12d) is a logit-space size: a shift does change it.
    assert not torch.allclose(shifted["rms_dz"], base["rms_dz"]) or abs(shift) < 1e-3


def test_scaling_leaves_cosines_unchanged():
    h_ref, h_var, weight, _ = (torch.from_numpy(x) for x in random_rows(seed=5))
    head = Head(weight)
    base = compute_metrics(h_ref, h_var, head)
    both = compute_metrics(3.0 * h_ref, 3.0 * h_var, head)
    var_only = compute_metrics(h_ref, 0.25 * h_var, head)
    for space in ("embedding", "logit"):  # a bias-free head is linear, so z scales with h
        for name in ("cos", "para_rel", "orth_rel_sq"):
            torch.testing.assert_close(getattr(both, space)[name], getattr(base, space)[name], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(getattr(var_only, space)["cos"], getattr(base, space)["cos"], rtol=1e-5, atol=1e-6)


# --- errors and chunking --------------------------------------------------------------------------


def test_non_finite_and_zero_rows_raise_with_row_index():
    h_ref, h_var, weight, _ = (torch.from_numpy(x) for x in random_rows(n=8))
    head = Head(weight)
    bad = h_var.clone()
    bad[5, 3] = float("nan")
    with pytest.raises(ValueError, match=r"h_var has a non-finite value .* row 5$"):
        compute_metrics(h_ref, bad, head)
    bad = h_ref.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"h_ref has a non-finite value .* row 0$"):
        compute_metrics(bad, h_var, head)
    bad = h_ref.clone()
    bad[2] = 0.0
    with pytest.raises(ValueError, match=r"all zeros .* row 2$"):
        compute_metrics(bad, h_var, head)
    huge = h_ref.clone()
    huge[7] = 1e37  # finite input, but its squared norm overflows fp32: reported, never a silent NaN
    with pytest.raises(ValueError, match=r"not finite .* row 7$"):
        compute_metrics(huge, h_var, head, chunk_rows=3)


def test_bad_arguments_are_rejected_before_work():
    h_ref, h_var, weight, _ = (torch.from_numpy(x) for x in random_rows(n=4, vocab=50))
    head = Head(weight)
    with pytest.raises(ValueError, match="width 32 but the head expects 16"):
        compute_metrics(h_ref, h_var, Head(weight[:, :16]))
    with pytest.raises(ValueError, match="temperatures"):
        compute_metrics(h_ref, h_var, head, temperatures=[0.0])
    with pytest.raises(ValueError, match=r"option_ids must lie in \[0, 50\)"):
        compute_metrics(h_ref, h_var, head, option_ids=torch.tensor([1, 50]))
    with pytest.raises(ValueError, match="repeat a token id in row 0"):
        compute_metrics(h_ref, h_var, head, option_ids=torch.tensor([3, 3]))


def test_chunked_equals_unchunked():
    h_ref, h_var, weight, bias = (torch.from_numpy(x) for x in random_rows(n=17))
    head = Head(weight, bias)
    ids = torch.tensor([4, 9, 30])
    whole = compute_metrics(h_ref, h_var, head, temperatures=[0.5, 1.0], option_ids=ids, chunk_rows=17)
    for chunk_rows in (1, 4, 100):
        parts = compute_metrics(h_ref, h_var, head, temperatures=[0.5, 1.0], option_ids=ids, chunk_rows=chunk_rows)
        # Same numbers up to the fp32 rounding of the projection, which BLAS blocks by batch size.
        for (space, t, name, a), (*_, b) in zip(whole.blocks(), parts.blocks(), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=f"{space} {t} {name}")


# --- the model's head -----------------------------------------------------------------------------


def test_head_from_model_reproduces_the_models_logits(family):
    model = tiny_model(family)
    ids = torch.tensor([[5, 17, 33, 2, 90]])
    captured = {}
    hook = model.model.layers[-1].register_forward_hook(lambda m, a, out: captured.update(raw=out))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    hook.remove()
    raw = captured["raw"][0] if isinstance(captured["raw"], tuple) else captured["raw"]
    # hidden_states[-1] is after the final norm; the raw last-layer output needs the norm first.
    torch.testing.assert_close(head_from_model(model)(out.hidden_states[-1][0]), out.logits[0])
    torch.testing.assert_close(head_from_model(model, apply_final_norm=True)(raw[0]), out.logits[0])
    assert not torch.allclose(head_from_model(model)(raw[0]), out.logits[0])


def test_head_from_model_is_fp32_for_a_bf16_model():
    model = tiny_model("qwen2").to(torch.bfloat16)
    head = head_from_model(model, apply_final_norm=True)
    assert head.weight.dtype == torch.float32 and head.norm.weight.dtype == torch.float32
    h = torch.randn(4, 64, dtype=torch.bfloat16)
    metrics = compute_metrics(h, h * 1.01 + 0.01, head)
    assert torch.isfinite(metrics.probability[1.0]["kl"]).all()


def test_head_from_model_reads_softcapping_from_config():
    head = head_from_model(tiny_model("llama", final_logit_softcapping=30.0))
    assert head.softcap == 30.0 and head.logit_scale == 1.0


# --- the long table -------------------------------------------------------------------------------


def layerwise_keys(layers=3, steps=4):
    rows = [
        dict(model="m", variant="dense", probe="layerwise", probe_set="math", prompt_id=f"p{p}", step=s,
             layer=layer, sublayer=sub, mode="drop")
        for p in range(2) for s in range(steps) for layer in range(layers) for sub in ("attn", "mlp")
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_long_table_layout_and_values():
    keys = layerwise_keys()
    n = len(keys)
    h_ref, h_var, weight, _ = (torch.from_numpy(x) for x in random_rows(n=n, vocab=64))
    metrics = compute_metrics(h_ref, h_var, Head(weight), temperatures=[0.5, 1.0], option_ids=torch.tensor([1, 2]))
    table = long_table(keys.assign(tokens="extra column, dropped"), metrics)
    assert tuple(table.columns) == COLUMNS
    assert table["value"].dtype == np.float64 and table["temperature"].dtype == np.float64
    free = len(TEMPERATURE_FREE["probability"]) + len(TEMPERATURE_FREE["subspace"])
    per_t = len(PROBABILITY_METRICS) + len(SUBSPACE_METRICS) + 4 - free  # 2 options: 4 log-probs
    assert len(table) == n * (2 * len(VECTOR_METRICS) + free + 2 * per_t)
    assert table.loc[table.space.isin(["embedding", "logit"]), "temperature"].isna().all()
    assert set(table.loc[table.space == "probability", "temperature"].dropna()) == {0.5, 1.0}
    # Row 11's KL at T = 0.5 lands next to row 11's keys.
    kl = table[(table.space == "probability") & (table.temperature == 0.5) & (table.metric == "kl")]
    assert kl.iloc[11][list(KEY_COLUMNS)].tolist() == keys.iloc[11].tolist()
    assert kl.iloc[11]["value"] == pytest.approx(float(metrics.probability[0.5]["kl"][11]))
    # Parquet/DuckDB see the missing temperature as null.
    assert pa.Table.from_pandas(table, preserve_index=False).column("temperature").null_count == n * (10 + free)


def test_long_table_fig4_query():
    keys = layerwise_keys()
    h_ref, h_var, weight, _ = (torch.from_numpy(x) for x in random_rows(n=len(keys), vocab=64, seed=9))
    metrics = compute_metrics(h_ref, h_var, Head(weight), temperatures=[0.7, 1.0])
    metrics_table = long_table(keys, metrics)  # noqa: F841  (DuckDB reads it by name)
    rows = duckdb.sql(
        """SELECT layer, space, avg(value), min(value) FROM metrics_table
           WHERE mode = 'drop' AND sublayer = 'attn' AND metric = 'cos'
             AND space IN ('embedding', 'logit', 'probability') AND (temperature IS NULL OR temperature = 1.0)
           GROUP BY layer, space ORDER BY layer, space"""
    ).fetchall()
    spaces = ("embedding", "logit", "probability")
    assert [(r[0], r[1]) for r in rows] == [(layer, space) for layer in range(3) for space in spaces]
    attn = (keys.sublayer == "attn").to_numpy()
    for layer, space, mean, low in rows:
        source = metrics.probability[1.0] if space == "probability" else getattr(metrics, space)
        values = source["cos"].numpy()[attn & (keys.layer == layer).to_numpy()]
        assert mean == pytest.approx(values.mean(), rel=1e-6) and low == pytest.approx(values.min(), rel=1e-6)


def test_long_table_rejects_mismatched_keys():
    keys = layerwise_keys()
    h_ref, h_var, weight, _ = (torch.from_numpy(x) for x in random_rows(n=len(keys), vocab=64))
    metrics = compute_metrics(h_ref, h_var, Head(weight))
    with pytest.raises(ValueError, match=r"lack column\(s\) \['sublayer'\]"):
        long_table(keys.drop(columns="sublayer"), metrics)
    with pytest.raises(ValueError, match="keys have 47 rows but the metrics have"):
        long_table(keys.iloc[:47], metrics)
