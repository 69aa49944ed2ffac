"""Logit-space sums of a linear output head, computed in the hidden space from the head's Gram matrix.

For z = s·(W n + b), n a hidden row (after the final norm when the head applies it), the logit-space
quantities the metrics need, apart from per-token maxima, are quadratic forms in the hidden space. With
n' = [n; 1], u' = [Δn; 0], W' = [W b] and G = s² W'ᵀW':

    ‖z‖² = n'ᵀG n',  z·Δz = n'ᵀG u',  ‖Δz − αz‖² = v'ᵀG v' (v' = u' − αn', α = z·Δz/‖z‖²),
    ‖Δz‖² = u'ᵀG u',  ‖Δz − mean(Δz)‖² = u'ᵀG_c u'  (G_c: the Gram of W' with its column means removed).

G is one O(V d²) product per head, in float64 so that no quadratic form loses digits to rounding (each
is then exact to ~1e-12 relative for any head whose W' is not nearly rank-deficient); per row the work
is O(d²) instead of five passes over V logits. The residual Δz − αz is formed in the hidden space, as
:mod:`.fused` forms it over the vocabulary, so the decomposition stays free of cancellation.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Rows of W' multiplied at a time while forming G (float64 copies of at most ~100 MB at d = 900).
_ROWS_AT_A_TIME = 1 << 14


class HeadGram:
    """G and G_c of a head z = ``scale``·(``weight`` n + ``bias``), and a bound on |z_v| per unit ‖n'‖."""

    def __init__(self, weight: Tensor, bias: Tensor | None, scale: float):
        vocab, dim = weight.shape
        gram = weight.new_zeros(dim + 1, dim + 1, dtype=torch.float64)
        column_sum = weight.new_zeros(dim + 1, dtype=torch.float64)
        largest_row = 0.0
        for start in range(0, vocab, _ROWS_AT_A_TIME):
            rows = weight[start : start + _ROWS_AT_A_TIME].double()
            extra = rows.new_zeros(rows.shape[0], 1) if bias is None else bias[start : start + rows.shape[0], None]
            part = torch.cat([rows, extra.double()], dim=1)
            gram.addmm_(part.T, part)
            column_sum += part.sum(dim=0)
            largest_row = max(largest_row, float(torch.linalg.vector_norm(part, dim=1).max()))
        mean = column_sum / vocab
        self.gram = gram * scale**2
        self.centred = (gram - vocab * torch.outer(mean, mean)) * scale**2
        self.row_bound = abs(scale) * largest_row  # |Δz_v| = |s W'_v·u'| <= s max_v ‖W'_v‖ ‖u'‖

    def sums(self, n_ref: Tensor, delta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For hidden rows n_ref and Δn [rows, d]: :data:`.fused.VECTOR_SUMS` of the logits ([rows, 3]),
        :data:`.fused.SPREAD_SUMS` of Δz ([rows, 2]), both fp32, and a bound on max_v |Δz_v| ([rows])."""
        ones = n_ref.new_ones(n_ref.shape[0], 1, dtype=torch.float64)
        n = torch.cat([n_ref.double(), ones], dim=1)
        u = torch.cat([delta.double(), torch.zeros_like(ones)], dim=1)
        gram_u = u @ self.gram
        ref_sq = _quadratic(n, n @ self.gram)
        dot = _quadratic(n, gram_u)
        orth = u - (dot / ref_sq)[:, None] * n
        orth_sq = _quadratic(orth, orth @ self.gram)
        centred_sq = _quadratic(u, u @ self.centred)
        vector = torch.stack([ref_sq, dot, orth_sq.clamp_min(0.0).sqrt()], dim=1).float()
        spread = torch.stack([centred_sq.clamp_min(0.0).sqrt(), _quadratic(u, gram_u).sqrt()], dim=1).float()
        return vector, spread, self.row_bound * torch.linalg.vector_norm(u, dim=1)


def _quadratic(a: Tensor, gram_b: Tensor) -> Tensor:
    return torch.linalg.vecdot(a, gram_b, dim=-1)
