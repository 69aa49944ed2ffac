"""Mask helpers against brute-force references written with plain Python sorting."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunescope.pruning.masks import n_to_prune, smallest_per_group, smallest_per_matrix, smallest_per_row


def brute_lowest(values: list[float], k: int) -> set[int]:
    """Indices of the k lowest values, ties to the lower index (the documented rule)."""
    return set(sorted(range(len(values)), key=lambda i: (values[i], i))[:k])


# Small integer scores make ties frequent, as in de-quantized weights.
tied_scores = st.integers(1, 6).flatmap(
    lambda rows: st.integers(1, 4).flatmap(
        lambda groups: st.lists(
            st.lists(st.integers(0, 3), min_size=groups * 4, max_size=groups * 4), min_size=rows, max_size=rows
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(tied_scores, st.floats(0.0, 0.99))
def test_per_row_matches_brute_force(scores, sparsity):
    tensor = torch.tensor(scores, dtype=torch.float32)
    k = n_to_prune(tensor.shape[1], sparsity)
    mask = smallest_per_row(tensor, k)
    for r, row in enumerate(scores):
        assert set(torch.nonzero(mask[r]).flatten().tolist()) == brute_lowest(row, k)


@settings(max_examples=60, deadline=None)
@given(tied_scores, st.floats(0.0, 0.99))
def test_per_matrix_matches_brute_force(scores, sparsity):
    tensor = torch.tensor(scores, dtype=torch.float32)
    k = n_to_prune(tensor.numel(), sparsity)
    mask = smallest_per_matrix(tensor, k)
    flat = [v for row in scores for v in row]
    assert set(torch.nonzero(mask.flatten()).flatten().tolist()) == brute_lowest(flat, k)


@settings(max_examples=60, deadline=None)
@given(tied_scores, st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4)]))
def test_n_of_m_matches_brute_force(scores, n_of_m):
    n, m = n_of_m
    tensor = torch.tensor(scores, dtype=torch.float32)
    mask = smallest_per_group(tensor, n, m)
    for r, row in enumerate(scores):
        for start in range(0, len(row), m):
            group = row[start : start + m]
            expected = {start + i for i in brute_lowest(group, n)}
            got = {start + i for i in range(m) if mask[r, start + i]}
            assert got == expected


def test_all_equal_scores_prune_lowest_indices_first():
    scores = torch.ones(2, 8)
    assert smallest_per_row(scores, 3)[:, :3].all() and not smallest_per_row(scores, 3)[:, 3:].any()
    assert smallest_per_matrix(scores, 3).flatten().tolist() == [True] * 3 + [False] * 13
    assert smallest_per_group(scores, 2, 4)[0].tolist() == [True, True, False, False] * 2


def test_per_matrix_threshold_is_global_not_per_row():
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    assert smallest_per_matrix(scores, 4).tolist() == [[True] * 4, [False] * 4]
    assert smallest_per_row(scores, 2).tolist() == [[True, True, False, False]] * 2


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: smallest_per_group(torch.ones(2, 8), 4, 4), "0 < N < M"),
        (lambda: smallest_per_group(torch.ones(2, 6), 2, 4), "d_in=6"),
        (lambda: smallest_per_row(torch.ones(2, 4), 5), "cannot prune 5"),
        (lambda: n_to_prune(10, 1.0), "sparsity"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_count_is_int_of_product():
    assert n_to_prune(64, 0.5) == 32
    assert n_to_prune(96, 0.7) == int(96 * 0.7)
    assert n_to_prune(10, 0.0) == 0
