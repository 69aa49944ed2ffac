"""Wanda: pruning by weights and activations.

Sun, Liu, Bair and Kolter, "A Simple and Effective Pruning Approach for Large Language Models"
(ICLR 2024, arXiv 2306.11695). The importance of weight W_ij of a linear layer y = W x is

    S_ij = |W_ij| * ||X_j||_2,

where ||X_j||_2 is the L2 norm of input feature j over every calibration token. Weights are compared
within each output row (the paper's "per-output" comparison group): every row loses exactly
``int(d_in * sparsity)`` weights, the lowest-scoring ones. For N:M sparsity, every run of M consecutive
inputs of a row loses its N lowest-scoring weights. No weight update follows.

Only the per-feature sum of squares is needed, so :class:`InputNormStats` keeps a ``[d_in]`` vector in
fp32 whatever the model's dtype. Ties go to the lower column index; see :mod:`.masks`.
"""

from __future__ import annotations

import torch

from .masks import n_to_prune, smallest_per_group, smallest_per_row


class InputNormStats:
    """Running sum over calibration tokens of x_j^2 for each input feature j (fp32)."""

    def __init__(self, d_in: int, device: torch.device | str = "cpu"):
        self.sum_sq = torch.zeros(d_in, dtype=torch.float32, device=device)
        self.n_tokens = 0

    def add(self, inputs: torch.Tensor) -> None:
        """Accumulate a batch of inputs shaped ``[..., d_in]`` (any leading dims are tokens)."""
        x = inputs.detach().reshape(-1, inputs.shape[-1]).float()
        self.sum_sq += (x * x).sum(dim=0)
        self.n_tokens += x.shape[0]

    @property
    def norms(self) -> torch.Tensor:
        """||X_j||_2 over all tokens seen so far."""
        return self.sum_sq.sqrt()


def wanda_scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """S_ij = |W_ij| * ||X_j||_2 in fp32."""
    if input_norms.shape != (weight.shape[1],):
        raise ValueError(f"input norms of shape {tuple(input_norms.shape)} do not match d_in={weight.shape[1]}")
    return weight.detach().float().abs() * input_norms.float().to(weight.device).unsqueeze(0)


def wanda_mask(
    weight: torch.Tensor, input_norms: torch.Tensor, sparsity: float, n_of_m: tuple[int, int] | None = None
) -> torch.Tensor:
    """Prune mask (``True`` = zero it) for a ``[d_out, d_in]`` weight given ||X_j||_2 per input feature."""
    scores = wanda_scores(weight, input_norms)
    if n_of_m is not None:
        return smallest_per_group(scores, *n_of_m)
    return smallest_per_row(scores, n_to_prune(scores.shape[1], sparsity))
