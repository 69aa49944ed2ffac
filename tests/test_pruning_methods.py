"""Magnitude, Wanda and SparseGPT: sparsity patterns on tiny models, closed forms and reconstruction error."""

from __future__ import annotations

import copy

import pytest
import torch

from prunescope.adapter import model_parts
from prunescope.pruning import (
    HessianStats,
    InputNormStats,
    inverse_hessian,
    magnitude_mask,
    prune_model,
    sparsegpt_prune,
    wanda_mask,
)
from prunescope.variants import parse_variant
from tests.conftest import tiny_model


def calibration(n=8, seqlen=24, seed=0, vocab=128):
    return torch.randint(0, vocab, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def pruned(family, variant, **kwargs):
    model = tiny_model(family)
    prune_model(model, parse_variant(variant), calibration(), "cpu", batch_size=3, **kwargs)
    return model


def target_weights(model):
    return {(l.index, name): lin.weight.detach() for l in model_parts(model).layers for name, lin in l.linears().items()}


# ---------------------------------------------------------------- statistics


def test_statistics_match_direct_formulas():
    x = torch.randn(5, 7, 16, generator=torch.Generator().manual_seed(0)) * 3
    norms, hessian = InputNormStats(16), HessianStats(16)
    for batch in x.split(2):
        norms.add(batch)
        hessian.add(batch)
    flat = x.reshape(-1, 16).double()
    assert norms.n_tokens == hessian.n_tokens == 35
    torch.testing.assert_close(norms.norms.double(), flat.pow(2).sum(0).sqrt(), rtol=1e-6, atol=0)
    torch.testing.assert_close(hessian.hessian.double(), 2 * flat.T @ flat / 35, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- patterns on tiny models


@pytest.mark.parametrize("sparsity", [50, 70])
def test_wanda_unstructured_prunes_exactly_int_d_in_s_in_every_row(family, sparsity):
    for (layer, name), weight in target_weights(pruned(family, f"wanda-unstructured{sparsity}")).items():
        per_row = (weight == 0).sum(dim=1)
        assert per_row.eq(int(weight.shape[1] * sparsity / 100)).all(), (layer, name, per_row.tolist())


@pytest.mark.parametrize("sparsity", [50, 70])
def test_magnitude_unstructured_threshold_is_per_matrix(family, sparsity):
    dense = target_weights(tiny_model(family))
    for key, weight in target_weights(pruned(family, f"magnitude-unstructured{sparsity}")).items():
        zero = weight == 0
        assert int(zero.sum()) == int(weight.numel() * sparsity / 100), key
        per_row = zero.sum(dim=1)
        assert per_row.min() < per_row.max(), f"{key}: every row has the same count, not a per-matrix threshold"
        magnitudes = dense[key].abs()
        assert magnitudes[zero].max() <= magnitudes[~zero].min(), key  # one threshold splits the matrix
        assert torch.equal(weight[~zero], dense[key][~zero]), key  # no weight update


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("n, m", [(2, 4), (4, 8)])
def test_n_of_m_holds_in_every_group_of_every_row(family, method, n, m):
    for key, weight in target_weights(pruned(family, f"{method}-{n}of{m}")).items():
        groups = (weight == 0).reshape(weight.shape[0], -1, m).sum(dim=-1)
        assert groups.eq(n).all(), (key, groups.unique().tolist())


# ---------------------------------------------------------------- hand-worked and closed-form checks


def test_wanda_weighs_magnitudes_by_input_norms_hand_example():
    weight = torch.tensor([[4.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    norms = torch.tensor([0.1, 10.0, 1.0, 1.0])
    # Scores row 0: [0.4, 10, 2, 3] -> prune columns 0 and 2; row 1: [0.1, 10, 1, 1] -> columns 0 and 2
    # (tie between 2 and 3 goes to the lower index). Magnitude would have pruned columns 1 and 2 of row 0.
    expected = torch.tensor([[True, False, True, False], [True, False, True, False]])
    assert torch.equal(wanda_mask(weight, norms, 0.5), expected)
    assert torch.equal(wanda_mask(weight, norms, 0.5, (2, 4)), expected)
    assert magnitude_mask(weight, 0.5, (2, 4))[0].tolist() == [False, True, True, False]


def test_inverse_hessian_factor_is_upper_cholesky_of_damped_inverse():
    x = torch.randn(500, 40, generator=torch.Generator().manual_seed(3)) * torch.linspace(0.1, 10, 40)
    stats = HessianStats(40)
    stats.add(x)
    upper = inverse_hessian(stats.hessian, percdamp=0.05).upper.double()
    h = 2 * x.double().T @ x.double() / 500
    damped_inverse = torch.linalg.inv(h + 0.05 * h.diagonal().mean() * torch.eye(40, dtype=torch.float64))
    assert torch.equal(upper, upper.triu()) and (upper.diagonal() > 0).all()
    torch.testing.assert_close(upper.T @ upper, damped_inverse, rtol=1e-4, atol=1e-7)


def test_sparsegpt_update_is_the_least_squares_optimum_for_a_prefix_mask():
    """Pruning the first p columns of each row, sequential OBS equals the constrained least-squares solution.

    With the damped Hessian H, minimising (w' - w)^T H (w' - w) subject to w'_P = 0 gives
    w'_F = w_F + H_FF^-1 H_FP w_P (F = kept columns). Tiny prefix weights force the mask onto P.
    """
    generator = torch.Generator().manual_seed(0)
    d_in, rows, p = 8, 3, 4
    x = torch.randn(200, d_in, generator=generator) @ (torch.eye(d_in) + 0.5 * torch.randn(d_in, d_in, generator=generator))
    weight = torch.randn(rows, d_in, generator=generator)
    weight[:, :p] *= 1e-3
    stats = HessianStats(d_in)
    stats.add(x)
    new, mask = sparsegpt_prune(weight, inverse_hessian(stats.hessian, 0.01), 0.5, blocksize=d_in)

    h = stats.hessian.double()
    h += 0.01 * h.diagonal().mean() * torch.eye(d_in, dtype=torch.float64)
    kept = slice(p, d_in)
    w = weight.double()
    expected = w[:, kept] + torch.linalg.solve(h[kept, kept], h[kept, :p] @ w[:, :p].T).T
    assert mask[:, :p].all() and not mask[:, p:].any()
    assert torch.equal(new[:, :p], torch.zeros(rows, p))
    torch.testing.assert_close(new[:, kept].double(), expected, rtol=1e-4, atol=1e-6)


def test_sparsegpt_lazy_block_updates_equal_one_big_block():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(300, 32, generator=generator)
    weight = torch.randn(16, 32, generator=generator)
    stats = HessianStats(32)
    stats.add(x)
    inverse = inverse_hessian(stats.hessian)
    small, small_mask = sparsegpt_prune(weight, inverse, 0.5, (2, 4), blocksize=8)
    big, big_mask = sparsegpt_prune(weight, inverse, 0.5, (2, 4), blocksize=32)
    assert torch.equal(small_mask, big_mask)
    torch.testing.assert_close(small, big, rtol=1e-4, atol=1e-5)


def test_sparsegpt_zeroes_dead_input_columns():
    x = torch.randn(100, 8, generator=torch.Generator().manual_seed(2))
    x[:, 3] = 0
    stats = HessianStats(8)
    stats.add(x)
    inverse = inverse_hessian(stats.hessian)
    assert inverse.dead.tolist() == [i == 3 for i in range(8)]
    new, mask = sparsegpt_prune(torch.ones(4, 8), inverse, 0.25)
    assert mask[:, 3].all() and new[:, 3].eq(0).all()


# ---------------------------------------------------------------- reconstruction error ordering


def outlier_inputs(n, d, seed):
    """Correlated features with log-normal scales and a few 20x outlier features, as in LLM activations."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.eye(d) + torch.randn(d, d, generator=generator) / d**0.5
    scales = torch.exp(0.5 * torch.randn(d, generator=generator))
    scales[torch.randperm(d, generator=generator)[:4]] *= 20
    return (torch.randn(n, d, generator=generator) @ mixing) * scales


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_of_m", [None, (2, 4), (4, 8)])
def test_reconstruction_error_sparsegpt_below_wanda_below_magnitude(seed, n_of_m):
    x = outlier_inputs(1024, 128, seed)
    weight = torch.randn(64, 128, generator=torch.Generator().manual_seed(100 + seed)) * 0.05
    norms, hessian = InputNormStats(128), HessianStats(128)
    for batch in x.split(256):
        norms.add(batch)
        hessian.add(batch)
    sparse, _ = sparsegpt_prune(weight, inverse_hessian(hessian.hessian), 0.5, n_of_m, blocksize=32)
    wanda = weight.masked_fill(wanda_mask(weight, norms.norms, 0.5, n_of_m), 0)
    magnitude = weight.masked_fill(magnitude_mask(weight, 0.5, n_of_m), 0)
    errors = [((weight - w) @ x.T).norm().item() for w in (sparse, wanda, magnitude)]
    assert errors[0] < errors[1] < errors[2], errors


@pytest.mark.parametrize("pattern", ["unstructured50", "2of4"])
def test_model_reconstruction_error_order_on_calibration_inputs(family, pattern):
    """On layer 0 (inputs identical for every method), with outlier-scaled norm weights as in trained LLMs."""
    dense = tiny_model(family)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model_parts(dense).layers:
            for norm in (layer.attn_norm, layer.mlp_norm):
                scales = torch.exp(0.5 * torch.randn(64, generator=generator))
                scales[torch.randperm(64, generator=generator)[:3]] *= 10
                norm.weight.copy_(scales)
    ids = calibration(16, 32, seed=1)
    linears = model_parts(dense).layers[0].linears()
    captured = {name: [] for name in linears}
    hooks = [lin.register_forward_pre_hook(lambda _m, a, n=name: captured[n].append(a[0])) for name, lin in linears.items()]
    with torch.no_grad():
        dense(ids)
    for hook in hooks:
        hook.remove()
    inputs = {name: torch.cat(xs).reshape(-1, linears[name].in_features) for name, xs in captured.items()}

    errors = {}
    for method in ("sparsegpt", "wanda", "magnitude"):
        model = copy.deepcopy(dense)
        prune_model(model, parse_variant(f"{method}-{pattern}"), ids, "cpu", batch_size=4)
        pruned_linears = model_parts(model).layers[0].linears()
        errors[method] = {
            name: ((linears[name].weight - pruned_linears[name].weight) @ inputs[name].T).norm().item() for name in linears
        }
    for name in linears:
        order = [errors[m][name] for m in ("sparsegpt", "wanda", "magnitude")]
        assert order[0] < order[1] < order[2], (name, order)
