"""SparseGPT: one-shot pruning with Optimal Brain Surgeon weight updates.

Frantar and Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"
(ICML 2023, arXiv 2301.00774), Algorithm 1. For a linear layer y = W x with calibration inputs X, the
layer-wise objective ||W X - W' X||^2 has Hessian H = 2 X X^T (here averaged over the n calibration
tokens, H = 2/n sum x x^T, which rescales nothing that matters). Rows of W are solved together:

1. Dead inputs (H_ii = 0: feature j was zero on every token) get H_ii = 1 and their weights are zeroed.
   The diagonal is then damped by ``percdamp * mean(diag H)`` so H is safely positive definite.
2. U = the upper Cholesky factor of H^-1 (H^-1 = U^T U). Row j of U holds, for the columns j.. still
   free, exactly the inverse-Hessian information the OBS update for column j needs.
3. Columns are processed left to right in blocks of ``blocksize``. For each column j, the pruned entries
   of W[:, j] are set to zero and the error e = w_j / U_jj (zero where kept) is spread over the
   remaining columns of the block: W[:, j+1:] -= e U[j, j+1:] (the OBS update). After a block, its
   accumulated errors E update every later column at once: W[:, later] -= E U[block, later] (the
   paper's lazy batch update).
4. Which entries are pruned is chosen adaptively with saliency w^2 / U_jj^2, on the weights as updated
   so far: unstructured, once per block over the whole [d_out x blocksize] block (all rows jointly),
   exactly ``int(numel_block * sparsity)`` entries; N:M, per row in each run of M columns, the N lowest,
   chosen when the run's first column is reached.

Difference from the authors' code, on purpose: the unstructured block mask prunes exactly
``int(numel * sparsity)`` entries, ties broken by index (the reference prunes every entry ``<=`` the
value at that rank, so at least one more per block). Everything runs in fp32 on the weight's device.

The Hessian statistics, the inverse-Hessian factor and the lazy-block sweep live in :mod:`.obs`, shared
with GPTQ (:mod:`prunescope.quantization.gptq`); this module holds only the pruning rule.
"""

from __future__ import annotations

import torch

from .masks import n_to_prune, smallest_per_group, smallest_per_matrix
from .obs import ColumnSweep, HessianStats, InverseHessian, inverse_hessian

__all__ = ["HessianStats", "InverseHessian", "inverse_hessian", "sparsegpt_prune"]


def sparsegpt_prune(
    weight: torch.Tensor,
    inverse: InverseHessian,
    sparsity: float,
    n_of_m: tuple[int, int] | None = None,
    blocksize: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune a ``[d_out, d_in]`` weight; return (updated weight in fp32, prune mask).

    The mask is ``True`` at every pruned entry, dead input columns included; the returned weight is
    exactly zero there and carries the OBS compensation everywhere else.
    """
    d_out, d_in = weight.shape
    if inverse.upper.shape != (d_in, d_in):
        raise ValueError(f"inverse Hessian of shape {tuple(inverse.upper.shape)} does not match d_in={d_in}")
    if blocksize < 1 or (n_of_m is not None and blocksize % n_of_m[1]):
        raise ValueError(f"SparseGPT blocksize must be a positive multiple of M, got {blocksize} (n_of_m={n_of_m})")
    upper = inverse.upper.to(weight.device)
    dead = inverse.dead.to(weight.device)
    # Work on W^T: an input column of W is then a contiguous row, which keeps the per-column loop fast.
    w_t = weight.detach().float().t().contiguous()
    w_t[dead] = 0.0
    mask_t = torch.zeros_like(w_t, dtype=torch.bool)
    rule = _PruneRule(mask_t, sparsity, n_of_m)
    ColumnSweep(w_t, upper, blocksize).run(rule.column, rule.begin_block)

    mask_t[dead] = True
    w_t.masked_fill_(mask_t, 0.0)  # pruned entries are exact zeros, not w - (w / d) * d
    return w_t.t().contiguous(), mask_t.t().contiguous()


class _PruneRule:
    """Chooses the mask adaptively and gives the OBS sweep each column's error (transposed: row j = column j).

    The error of column j is e_j = w_j / U_jj at pruned entries, zero elsewhere. Pruned entries are left
    holding their last value; :func:`sparsegpt_prune` zeroes them once at the end, which is the same
    because later updates only touch columns to the right of the one being pruned.
    """

    def __init__(self, mask_t: torch.Tensor, sparsity: float, n_of_m: tuple[int, int] | None):
        self.mask_t, self.sparsity, self.n_of_m = mask_t, sparsity, n_of_m
        self.block_mask = self.scale = None

    def begin_block(self, start: int, block_t: torch.Tensor, diag: torch.Tensor) -> None:
        self.block_mask = self.mask_t[start : start + block_t.shape[0]]
        if self.n_of_m is None:
            saliency = block_t.square() / diag.square()
            self.block_mask.copy_(smallest_per_matrix(saliency.t(), n_to_prune(saliency.numel(), self.sparsity)).t())
            self.scale = self.block_mask / diag  # e_j = w_j * mask_j / U_jj

    def column(self, j: int, block_t: torch.Tensor, diag: torch.Tensor, error: torch.Tensor) -> None:
        if self.n_of_m is None:
            torch.mul(block_t[j], self.scale[j], out=error)
            return
        n, m = self.n_of_m
        if j % m == 0:  # the run of M columns starting here gets its N:M mask on the weights as updated so far
            saliency = block_t[j : j + m].square() / diag[j : j + m].square()
            self.block_mask[j : j + m] = smallest_per_group(saliency.t(), n, m).t()
            self.scale = self.block_mask[j : j + m] / diag[j : j + m]
        torch.mul(block_t[j], self.scale[j % m], out=error)
