"""The fast passes over the vocabulary (prunescope.metrics.fused): the same numbers whatever their blocking,
the first maximal token on ties, heads that scale and soft-cap, and q − p accurate for tiny deviations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import prunescope.metrics.spaces as spaces
from prunescope.metrics import Head, compute_metrics, probability_metrics, vector_metrics


def softmax64(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def shifted_rows(n=6, dim=16, vocab=1000, shift=3.0, scale=1e-5, seed=0):
    """h_var = h_ref + Δh whose first coordinate moves every logit by ``shift``, the rest by ~``scale``."""
    g = np.random.default_rng(seed)
    weight = (g.normal(size=(vocab, dim)) / np.sqrt(dim) * 4).astype(np.float32)
    weight[:, 0] = 1.0
    h_ref = g.normal(size=(n, dim)).astype(np.float32)
    delta = (scale * g.normal(size=(n, dim))).astype(np.float32)
    delta[:, 0] = shift
    return h_ref, h_ref + delta, weight


def test_total_variation_and_cosine_when_one_token_holds_the_mass():
    # p puts ~1 − 1e-5 on one token; log(q/p) there is ~1e-7 while log E_p[exp(Δz)] ≈ Δz_top ~ 0.01,
    # whose fp32 rounding alone would be as large: q − p is first-order in it.
    g = np.random.default_rng(0)
    z = g.normal(size=(8, 2000)).astype(np.float32)
    z[:, 7] += 14.0
    z_var = (z + 0.01 * g.normal(size=z.shape)).astype(np.float32)
    m = {k: v.numpy() for k, v in probability_metrics(torch.from_numpy(z), torch.from_numpy(z_var)).items()}
    p, q = softmax64(z.astype(np.float64)), softmax64(z_var.astype(np.float64))
    np.testing.assert_allclose(m["total_variation"], 0.5 * np.abs(p - q).sum(-1), rtol=1e-4)
    cos = (p * q).sum(-1) / np.sqrt((p * p).sum(-1) * (q * q).sum(-1))
    np.testing.assert_allclose(m["one_minus_cos"], 1 - cos, rtol=5e-3)  # ~1e-13: fp32 resolves 1 − cos so far
    np.testing.assert_allclose(m["kl"], (p * np.log(p / q)).sum(-1), rtol=1e-5)


def test_kl_when_the_logit_difference_exceeds_exp_range():
    # Δz/T ≈ 90 everywhere (beyond e^88): the log-normaliser must be taken relative to its maximum.
    h_ref, h_var, weight = shifted_rows(shift=45.0, scale=0.05)
    got = compute_metrics(torch.from_numpy(h_ref), torch.from_numpy(h_var), Head(torch.from_numpy(weight)),
                          temperatures=[0.5])  # fmt: skip
    h, hv, w = (x.astype(np.float64) for x in (h_ref, h_var, weight))
    p, q = softmax64(h @ w.T / 0.5), softmax64(hv @ w.T / 0.5)
    np.testing.assert_allclose(got.probability[0.5]["kl"].numpy(), (p * np.log(p / q)).sum(-1), rtol=1e-3)


def test_a_tail_below_the_exp_floor_leaves_every_metric_as_in_float64():
    # Real rows put most of the vocabulary more than 87 below the top logit (exp is floored there, see
    # fused.EXP_FLOOR); here the logits span 0 to -300, Δz moves the tail by up to ±40 and the head by ~0.3.
    g = np.random.default_rng(1)
    z = -300 * g.random(size=(6, 3000)) ** 2
    z[:, :50] = g.normal(size=(6, 50))
    dz = 0.3 * g.normal(size=z.shape)
    dz[:, 50:] = 40 * g.uniform(-1, 1, size=(6, 2950))
    # tail tokens 100 below the top that gain e^79, e^75, e^70 (log(q/p) under the overflow bound of 80)
    z[:3, 60], dz[:3, 60] = -100.0, [79.0, 75.0, 70.0]
    z, z_var = z.astype(np.float32), (z + dz).astype(np.float32)
    assert (z - z.max(-1, keepdims=True) < -87).mean() > 0.4 and (z_var - z_var.max(-1, keepdims=True) < -87).any()
    for t in (1.0, 0.5):
        m = {k: v.numpy() for k, v in probability_metrics(torch.from_numpy(z), torch.from_numpy(z_var), t).items()}
        z64, zv64 = z.astype(np.float64) / t, z_var.astype(np.float64) / t
        p, q = softmax64(z64), softmax64(zv64)
        with np.errstate(divide="ignore", invalid="ignore"):  # p underflows to 0 in float64 too: 0 log 0 = 0
            kl = np.where(p > 0, p * (np.log(p) - np.log(np.where(q > 0, q, 1e-320))), 0.0).sum(-1)
        np.testing.assert_allclose(m["kl"], kl, rtol=1e-4)
        np.testing.assert_allclose(m["total_variation"], 0.5 * np.abs(p - q).sum(-1), rtol=1e-4)
        d = (zv64 - z64) * t
        mean_p = (p * d).sum(-1, keepdims=True)
        np.testing.assert_allclose(m["kl_estimate"], (p * (d - mean_p) ** 2).sum(-1) / (2 * t * t), rtol=1e-4)
        cos = (p * q).sum(-1) / np.sqrt((p * p).sum(-1) * (q * q).sum(-1))
        np.testing.assert_allclose(m["one_minus_cos"], 1 - cos, rtol=1e-3)


@pytest.mark.parametrize("gain", [79.0, 70.0])
def test_a_token_below_the_exp_floor_that_gains_mass(gain):
    # p̃ of token 60 is e^-100, far below the floor; q̃ is e^(gain - 100): its mass must come from q itself.
    z = np.full((1, 1000), -200.0)
    z[0, :50] = np.random.default_rng(0).normal(size=50)
    dz = np.zeros_like(z)
    z[0, 60], dz[0, 60] = -100.0, gain
    z_var = z + dz
    m = probability_metrics(torch.tensor(z, dtype=torch.float32), torch.tensor(z_var, dtype=torch.float32))
    p, q = softmax64(z[0]), softmax64(z_var[0])
    # A p̃ floored to e^-87 instead of 0 would add e^(gain - 87) / Σp̃: 3e-5 and 4e-9 here.
    np.testing.assert_allclose(float(m["kl"][0]), (p * (np.log(p) - np.log(q))).sum(), rtol=1e-2, atol=1e-13)
    np.testing.assert_allclose(float(m["total_variation"][0]), 0.5 * np.abs(p - q).sum(), rtol=1e-2, atol=1e-13)


def test_top1_agreement_takes_the_first_maximal_token():
    vocab = 1024  # scanned in groups of 64
    z = torch.zeros(5, vocab)
    z_var = torch.zeros(5, vocab)
    z[:, 5] = z[:, 700] = 10.0  # ties across groups: the first (5) is the top token
    z_var[0, 5] = z_var[0, 700] = 10.0  # same tie: agree
    z_var[1, 5], z_var[1, 700] = 10.0, 11.0  # the later one wins: disagree
    z[2, 5] = z[2, 700] = 0.0
    z[2, 64] = z[2, 65] = 9.0  # ties inside a group: 64
    z_var[2, 65] = 9.0  # 65 alone: disagree
    z[3, 5] = z[3, 700] = 0.0
    z[3, 1023] = 3.0  # the maximum in the last column
    z_var[3, 1023] = 2.0
    z_var[3, 1022] = 1.0  # still the last: agree
    z_var[4, 5] = z_var[4, 6] = 10.0  # ties again, the first still 5: agree
    got = probability_metrics(z, z_var)["top1_agree"]
    expected = (z.argmax(dim=-1) == (z + (z_var - z)).argmax(dim=-1)).float()
    assert got.tolist() == expected.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("rows_per_block", [1, 3, None])  # None: the whole chunk at once, as on a GPU
def test_blocking_does_not_change_the_metrics(monkeypatch, rows_per_block):
    h_ref, h_var, weight = shifted_rows(n=11, vocab=512, shift=0.3, scale=0.05, seed=4)
    args = (torch.from_numpy(h_ref), torch.from_numpy(h_var), Head(torch.from_numpy(weight)), [0.7, 1.0],
            torch.tensor([[3, 9, 500, -1]] * 6 + [[7, 8, 9, 10]] * 5))  # fmt: skip
    reference = compute_metrics(*args, chunk_rows=11)  # default blocks: 11 rows of 512 fit one block
    monkeypatch.setattr(spaces, "_CPU_BLOCK_ELEMENTS", 512 * (rows_per_block or 1000))
    blocked = compute_metrics(*args, chunk_rows=7)
    for (space, t, name, a), (*_, b) in zip(reference.blocks(), blocked.blocks(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7, equal_nan=True, msg=f"{space} {t} {name}")


@pytest.mark.parametrize("scale, softcap", [(0.5, None), (1.0, 30.0), (0.25, 5.0)])
def test_scaled_and_soft_capped_heads_match_their_logits(scale, softcap):
    h_ref, h_var, weight = shifted_rows(n=5, vocab=300, shift=0.2, scale=0.1, seed=7)
    bias = torch.linspace(-1, 1, 300)
    head = Head(torch.from_numpy(weight), bias, logit_scale=scale, softcap=softcap)
    h, hv = torch.from_numpy(h_ref), torch.from_numpy(h_var)
    got = compute_metrics(h, hv, head, temperatures=[0.8])
    z64 = (h.double() @ torch.from_numpy(weight).double().T + bias.double()) * scale
    zv64 = (hv.double() @ torch.from_numpy(weight).double().T + bias.double()) * scale
    if softcap is not None:
        z64, zv64 = softcap * torch.tanh(z64 / softcap), softcap * torch.tanh(zv64 / softcap)
    expected = probability_metrics(z64.float(), zv64.float(), 0.8)
    for name in ("kl", "cos", "total_variation", "kl_estimate", "rms_dz", "top1_agree"):
        torch.testing.assert_close(got.probability[0.8][name], expected[name], rtol=2e-3, atol=1e-6, msg=name)
    torch.testing.assert_close(got.logit["cos"], vector_metrics(z64.float(), zv64.float())["cos"], rtol=1e-5, atol=0)
    assert math.isclose(float(head(h)[0, 0]), float(z64[0, 0]), rel_tol=1e-5, abs_tol=1e-6)


def test_a_head_with_its_final_norm_matches_its_logits():
    # Linear after the norm: the logit-space sums come from the head's Gram matrix in the hidden space.
    from prunescope.metrics import head_from_model
    from tests.conftest import tiny_model

    model = tiny_model("qwen2")
    with torch.no_grad():
        model.model.norm.weight.uniform_(0.5, 1.5)
    head = head_from_model(model, apply_final_norm=True)
    g = torch.Generator().manual_seed(3)
    h = torch.randn(9, 64, generator=g) * 2
    hv = h + torch.logspace(-3, 0, 9)[:, None] * torch.randn(9, 64, generator=g)
    got = compute_metrics(h, hv, head, temperatures=[1.0], chunk_rows=4)
    with torch.no_grad():
        z, zv = head(h), head(hv)
    z64, zv64 = z.double(), zv.double()
    cos64 = (z64 * zv64).sum(-1) / (z64.norm(dim=-1) * zv64.norm(dim=-1))
    torch.testing.assert_close(got.logit["cos"].double(), cos64, rtol=1e-5, atol=1e-7)
    dz = zv64 - z64
    torch.testing.assert_close(got.probability[1.0]["rms_dz"].double(), dz.square().mean(-1).sqrt(), rtol=1e-3, atol=0)
    torch.testing.assert_close(got.probability[1.0]["var_uniform"].double(), dz.var(-1, correction=0), rtol=1e-3,
                               atol=0)  # fmt: skip
    expected = probability_metrics(z, zv)
    torch.testing.assert_close(got.probability[1.0]["kl"], expected["kl"], rtol=2e-3, atol=1e-9)
