"""Prune masks from importance scores, shared by every pruning method.

A mask is a bool tensor shaped like the weight, ``True`` where the weight is pruned (set to zero).
Each helper prunes an exact number of the lowest scores inside a comparison group:

- :func:`smallest_per_matrix`: the whole matrix is one group (magnitude pruning, unstructured);
- :func:`smallest_per_row`: each output row is a group (Wanda, unstructured);
- :func:`smallest_per_group`: each run of ``m`` consecutive input columns of each row is a group, and
  exactly ``n`` of its ``m`` entries are pruned (N:M semi-structured sparsity, e.g. 2:4 or 4:8).

Ties are broken deterministically by position: scores are ordered with a *stable* sort, so among equal
scores the entry with the lower (flat, row-major) index is pruned first. This matters for weights
de-quantized from low-bit formats (the embedded SmolLM2 is Q4_1: at most 16 distinct values per block of
32), where many magnitudes are exactly equal and an unstable sort would make masks run-dependent.
"""

from __future__ import annotations

import torch


def _lowest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the ``k`` lowest entries along the last dimension (ties: lower index first).

    Equivalent to taking the first ``k`` of a stable sort, but linear-time: find the k-th value, keep
    everything below it, and fill up with the first entries equal to it.
    """
    size = scores.shape[-1]
    if k == 0 or k == size:
        return torch.full_like(scores, k == size, dtype=torch.bool)
    kth = torch.kthvalue(scores, k, dim=-1, keepdim=True).values
    below, tied = scores < kth, scores == kth
    missing = k - below.sum(dim=-1, keepdim=True)
    if bool((tied.sum(dim=-1, keepdim=True) == missing).all()):  # no tie straddles the cut
        return below | tied
    return below | (tied & (tied.cumsum(dim=-1) <= missing))


def _check_count(k: int, size: int, what: str) -> None:
    if not 0 <= k <= size:
        raise ValueError(f"cannot prune {k} entries of a {what} of {size}; need 0 <= k <= {size}")


def smallest_per_matrix(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Prune the ``k`` lowest scores of the whole 2-D ``scores`` (ties: lower row-major index first)."""
    _check_count(k, scores.numel(), "matrix")
    return _lowest_k(scores.reshape(-1), k).reshape(scores.shape)


def smallest_per_row(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Prune the ``k`` lowest scores in every row of the 2-D ``scores`` (ties: lower column first)."""
    _check_count(k, scores.shape[-1], "row")
    return _lowest_k(scores, k)


def smallest_per_group(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M mask: in every row, in each run of ``m`` consecutive columns, prune the ``n`` lowest scores."""
    rows, cols = scores.shape
    if not 0 < n < m:
        raise ValueError(f"N:M sparsity needs 0 < N < M, got N={n}, M={m}")
    if cols % m:
        raise ValueError(f"N:M sparsity with M={m} needs the input dimension divisible by M, got d_in={cols}")
    return _lowest_k(scores.reshape(rows, cols // m, m), n).reshape(rows, cols)


def n_to_prune(size: int, sparsity: float) -> int:
    """How many of ``size`` entries a ratio prunes: ``int(size * sparsity)``, as the reference code does."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return int(size * sparsity)
