"""Magnitude pruning: remove the weights of smallest absolute value.

The classic data-free baseline (e.g. Han et al. 2015; used as the baseline in Wanda, Sun et al. 2024,
and SparseGPT, Frantar & Alistarh 2023). The score is |W_ij|.

- Unstructured: one comparison group per weight matrix, i.e. a single threshold for the whole matrix, so
  rows end up with different numbers of zeros. Exactly ``int(numel * sparsity)`` weights are pruned.
- N:M: in every row, in each run of M consecutive input columns, the N smallest |W| are pruned.

Ties (frequent in de-quantized weights) go to the lower row-major index; see :mod:`.masks`. The Wanda
repository's magnitude baseline instead prunes every |W| <= the value at rank ``int(numel * s)``, which
with many tied magnitudes prunes more than asked; here the count is exact.
"""

from __future__ import annotations

import torch

from .masks import n_to_prune, smallest_per_group, smallest_per_matrix


def magnitude_mask(weight: torch.Tensor, sparsity: float, n_of_m: tuple[int, int] | None = None) -> torch.Tensor:
    """Prune mask (``True`` = zero it) for a ``[d_out, d_in]`` weight; ``n_of_m`` selects N:M sparsity."""
    scores = weight.detach().float().abs()
    if n_of_m is not None:
        return smallest_per_group(scores, *n_of_m)
    return smallest_per_matrix(scores, n_to_prune(scores.numel(), sparsity))
