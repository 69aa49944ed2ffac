"""GPTQ and AWQ on single layers: an independent float64 GPTQ, error ordering, AWQ's scale search and folding."""

from __future__ import annotations

import copy

import pytest
import torch

from prunescope.adapter import model_parts
from prunescope.pruning import SHARED_INPUTS, HessianStats
from prunescope.quantization import (
    ActivationStats,
    fit_grid,
    gptq_hessian,
    gptq_quantize,
    on_grid,
    output_error,
    rtn_quantize,
)
from prunescope.quantization.awq import SCALE_GROUPS, awq_scales, fold_layer_scales
from tests.conftest import tiny_model


def correlated_inputs(n, d, seed, outliers=4):
    """Correlated features with log-normal scales and a few 20x outlier channels, as in LLM activations."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.eye(d) + torch.randn(d, d, generator=generator) / d**0.5
    scales = torch.exp(0.5 * torch.randn(d, generator=generator))
    scales[torch.randperm(d, generator=generator)[:outliers]] *= 20
    return (torch.randn(n, d, generator=generator) @ mixing) * scales


def hessian_of(x):
    stats = HessianStats(x.shape[1])
    for batch in x.split(100):
        stats.add(batch)
    return stats.hessian


def reference_gptq(weight, x, bits, group_size, percdamp=0.01, act_order=False):
    """GPTQ written the plain way, in float64, in the original column order with an explicit inverse.

    Visit columns (by decreasing H_jj for act-order); fix a group's min/max grid (range widened to 0) from
    its current values when its first column is visited; round the column, spread (w - q) / Hinv_jj over
    every column not yet visited with row j of Hinv, then remove j from Hinv by the OBS downdate
    Hinv -= Hinv[:, j] Hinv[j, :] / Hinv_jj (Frantar et al. 2022/2023). No Cholesky, no blocks.
    """
    w = weight.double().clone()
    x = x.double()
    h = 2 * x.T @ x / x.shape[0]
    d_in, maxq = w.shape[1], 2**bits - 1
    dead = h.diagonal() == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    order = sorted(range(d_in), key=lambda j: -float(h[j, j])) if act_order else list(range(d_in))
    h += percdamp * h.diagonal().mean() * torch.eye(d_in, dtype=torch.float64)
    hinv = torch.linalg.inv(h)
    columns = d_in if group_size is None else group_size
    grids, free = {}, set(range(d_in))
    for j in order:
        g = j // columns
        if g not in grids:
            values = w[:, g * columns:(g + 1) * columns]
            low, high = values.min(dim=1).values.clamp(max=0), values.max(dim=1).values.clamp(min=0)
            scale = (high - low) / maxq
            scale[scale == 0] = 1
            grids[g] = (scale, torch.round(-low / scale))
        scale, zero = grids[g]
        q = (torch.clamp(torch.round(w[:, j] / scale) + zero, 0, maxq) - zero) * scale
        error = (w[:, j] - q) / hinv[j, j]
        free.discard(j)
        rest = sorted(free)
        w[:, rest] -= torch.outer(error, hinv[j, rest])
        w[:, j] = q
        hinv = hinv - torch.outer(hinv[:, j], hinv[j, :]) / hinv[j, j]
    return w


@pytest.mark.parametrize("bits, group_size", [(3, 8), (4, 16), (2, None), (4, None)])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("blocksize", [5, 16, 128])
def test_gptq_equals_a_plain_float64_implementation(bits, group_size, act_order, blocksize):
    x = correlated_inputs(400, 32, seed=bits)
    x[:, 7] = 0  # one dead input
    weight = torch.randn(6, 32, generator=torch.Generator().manual_seed(10 + bits))
    prepared = gptq_hessian(hessian_of(x), 0.01, act_order)
    ours, grid = gptq_quantize(weight, prepared, bits, group_size, blocksize)
    expected = reference_gptq(weight, x, bits, group_size, 0.01, act_order)
    torch.testing.assert_close(ours.double(), expected, rtol=0, atol=1e-5)
    assert on_grid(ours, grid) and torch.equal(ours[:, 7], torch.zeros(6))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bits, group_size", [(3, 16), (4, 32), (4, None)])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_output_error_below_rtn_on_the_same_calibration_data(seed, bits, group_size, act_order):
    x = correlated_inputs(1024, 128, seed)
    weight = torch.randn(48, 128, generator=torch.Generator().manual_seed(100 + seed)) * 0.05
    h = hessian_of(x)
    gptq, _ = gptq_quantize(weight, gptq_hessian(h, 0.01, act_order), bits, group_size, 32)
    rtn, _ = rtn_quantize(weight, bits, group_size)
    direct = [((weight - w) @ x.T).norm().item() for w in (gptq, rtn)]
    assert direct[0] < direct[1], direct
    # The Hessian form of the error is the direct one: tr(dW H dW^T) = 2/n ||dW X||^2.
    for w, d in zip((gptq, rtn), direct):
        assert float(output_error(weight, w, h)) == pytest.approx(2 * d**2 / 1024, rel=1e-4)


def test_awq_scales_reduce_the_output_error_against_scale_one():
    x = correlated_inputs(2048, 64, seed=3, outliers=3)
    weights = [torch.randn(32, 64, generator=torch.Generator().manual_seed(s)) * 0.05 for s in (1, 2)]
    stats = ActivationStats(64)
    for batch in x.split(300):
        stats.add(batch)
    torch.testing.assert_close(stats.abs_mean, x.abs().mean(dim=0), rtol=1e-6, atol=0)
    choice = awq_scales(stats.abs_mean, weights, stats.hessian, bits=3, group_size=16, grid=20)

    def direct(scale):  # sum ||Q(W diag s) diag(1/s) X - W X||^2 over the group, from X itself
        return sum(((w - rtn_quantize(w * scale, 3, 16)[0] / scale) @ x.T).norm().item() ** 2 for w in weights)

    ones = torch.ones(64)
    assert choice.rtn_error == pytest.approx(2 * direct(ones) / 2048, rel=1e-4)
    assert choice.error == pytest.approx(2 * direct(choice.scale) / 2048, rel=1e-4)
    assert 0 < choice.alpha < 1 and choice.error < 0.8 * choice.rtn_error
    expected = x.abs().mean(dim=0) ** choice.alpha
    torch.testing.assert_close(choice.scale, expected / (expected.max() * expected.min()).sqrt(), rtol=1e-5, atol=0)
    # The outlier channels get the largest scales: their weights are rounded most finely.
    assert set(choice.scale.topk(3).indices.tolist()) == set(x.abs().mean(dim=0).topk(3).indices.tolist())


def test_awq_search_is_exhaustive_over_its_grid():
    x = correlated_inputs(512, 32, seed=4)
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(5))
    a, h = x.abs().mean(dim=0), hessian_of(x)
    choice = awq_scales(a, [weight], h, bits=3, group_size=8, grid=10)
    for step in range(10):
        s = a.pow(step / 10)
        s = s / (s.max() * s.min()).sqrt()
        error = float(output_error(weight, rtn_quantize(weight * s, 3, 8)[0] / s, h))
        assert choice.error <= error * (1 + 1e-6)


@pytest.mark.parametrize("overrides", [{}, {"num_key_value_heads": 4}, {"num_key_value_heads": 1}])
def test_folding_any_scales_leaves_the_model_function_unchanged(family, overrides):
    """Column scales s and the folded 1/s (norms, v_proj and up_proj rows, v bias) cancel exactly in exact
    arithmetic, so without rounding the logits stay the same, also under grouped-query attention."""
    model = tiny_model(family, **overrides)
    dense = copy.deepcopy(model)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model_parts(model).layers:
            linears = layer.linears()
            scales = {}
            for group in SCALE_GROUPS:
                width = linears["self_attn.v_proj"].out_features if group == ("self_attn.o_proj",) else linears[group[0]].in_features
                scales[group] = torch.exp(torch.randn(width, generator=generator))
            column, rows = fold_layer_scales(layer, linears, scales)
            assert set(rows) == {"self_attn.v_proj", "mlp.up_proj"}
            assert column["self_attn.o_proj"].numel() == linears["self_attn.o_proj"].in_features
        torch.testing.assert_close(model(ids).logits, dense(ids).logits, rtol=1e-4, atol=1e-4)
        assert not torch.equal(model.model.layers[0].input_layernorm.weight, dense.model.layers[0].input_layernorm.weight)


def test_gptq_act_order_grids_are_fixed_on_updated_weights_and_stay_contiguous():
    """With act-order a group's grid comes from its columns' values when the sweep first reaches one of
    them, after earlier columns' updates, so it differs from the grid of the original weight; the stored
    weight still lies on it, in fp32 and in bf16."""
    x = correlated_inputs(300, 64, seed=6)
    weight = torch.randn(8, 64, generator=torch.Generator().manual_seed(7))
    gptq, grid = gptq_quantize(weight, gptq_hessian(hessian_of(x), 0.01, True), 4, 16, 128)
    assert grid.scale.shape == (8, 4)
    assert on_grid(gptq, grid) and on_grid(gptq.to(torch.bfloat16), grid)
    assert not torch.equal(grid.scale, fit_grid(weight, 4, 16).scale)


def test_shared_input_groups_are_the_awq_scale_groups():
    assert SCALE_GROUPS == SHARED_INPUTS
