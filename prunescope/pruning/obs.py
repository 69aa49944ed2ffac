"""The Optimal Brain Surgeon column sweep shared by SparseGPT (pruning) and GPTQ (quantisation).

Both methods solve, for one linear layer y = W x with calibration inputs X, the layer-wise problem
min ||W X - W' X||^2 where W' is constrained (zeros for SparseGPT, grid values for GPTQ), greedily one
input column at a time, compensating every column's error on the columns not yet fixed:

- Hassibi and Stork, "Second order derivatives for network pruning: Optimal Brain Surgeon" (1993);
- Frantar, Ashkboos, Hoefler and Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative
  Pre-trained Transformers" (ICLR 2023, arXiv 2210.17323), Sec. 3-4: fixed column order, lazy blocks,
  Cholesky reformulation;
- Frantar and Alistarh, "SparseGPT" (ICML 2023, arXiv 2301.00774), Algorithm 1: the same sweep with
  pruning in place of rounding.

The shared parts:

1. :class:`HessianStats`: the running mean H = 2/n sum_t x_t x_t^T over calibration tokens (fp32).
2. :func:`inverse_hessian`: dead inputs (H_ii = 0) get H_ii = 1, the diagonal is damped by
   ``percdamp * mean(diag H)``, and U = the upper Cholesky factor of H^-1 is returned (H^-1 = U^T U).
   Row j of U holds what the update for column j needs about the columns j.. still free.
3. :class:`ColumnSweep`: the columns are visited left to right in blocks of ``blocksize``. A *rule*
   (the method) decides, for column j, its error e_j = (w_j - w'_j) / U_jj and may overwrite w_j with
   its fixed value w'_j; the sweep spreads e_j over the block's later columns at once
   (W[:, j+1:block_end] -= e_j U[j, j+1:block_end]) and, after the block, every later column receives
   the block's errors in one matrix product (the lazy batch update, W[:, later] -= E U[block, later]).

The sweep works on W^T (``w_t``, row j = input column j), so every column is a contiguous row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


class HessianStats:
    """Running mean H = 2/n sum_t x_t x_t^T over calibration tokens, in fp32."""

    def __init__(self, d_in: int, device: torch.device | str = "cpu"):
        self.hessian = torch.zeros(d_in, d_in, dtype=torch.float32, device=device)
        self.n_tokens = 0

    def add(self, inputs: torch.Tensor) -> None:
        """Accumulate a batch of inputs shaped ``[..., d_in]`` (any leading dims are tokens)."""
        x = inputs.detach().reshape(-1, inputs.shape[-1]).float()
        total = self.n_tokens + x.shape[0]
        # Rescale the old mean, then add the new tokens with weight 2/total: a running mean stays in
        # the range of single products, which keeps fp32 accurate over many tokens.
        self.hessian *= self.n_tokens / total
        x = x * math.sqrt(2.0 / total)
        self.hessian.addmm_(x.T, x)
        self.n_tokens = total


@dataclass(frozen=True)
class InverseHessian:
    """What the column sweep needs from H: U with (H + damp I)^-1 = U^T U, and the dead input columns."""

    upper: torch.Tensor
    dead: torch.Tensor


def inverse_hessian(hessian: torch.Tensor, percdamp: float = 0.01) -> InverseHessian:
    """Damp H and return the upper Cholesky factor of its inverse (step 2 of the module docstring).

    Linears that read the same input (q/k/v, gate/up) share H, so this is computed once per input.
    """
    if percdamp <= 0:
        raise ValueError(f"percdamp must be > 0, got {percdamp}")
    h = hessian.detach().float().clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    h.diagonal().add_(percdamp * h.diagonal().mean())
    # U without forming H^-1: factor H = V V^T with V upper triangular (the Cholesky factor of H with
    # its index order reversed); then H^-1 = V^-T V^-1, so U = V^-1 is upper triangular with a positive
    # diagonal: the upper Cholesky factor of H^-1. One factorisation and one triangular inverse.
    try:
        flipped = torch.linalg.cholesky(h.flip(0, 1))
        v = flipped.flip(0, 1)
        identity = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
        upper = torch.linalg.solve_triangular(v, identity, upper=True)
    except torch.linalg.LinAlgError as error:
        raise ValueError(
            f"the damped Hessian ({h.shape[0]} inputs) is not positive definite with "
            f"percdamp={percdamp}; use more calibration tokens or a larger percdamp"
        ) from error
    return InverseHessian(upper=upper, dead=dead)


# A rule's hooks. ``begin_block(start, block_t, diag)`` is called when a block starts; ``column(j, block_t,
# diag, error)`` for column ``start + j``: it writes e_j into ``error`` (shaped like one row of w_t) and may
# overwrite ``block_t[j]`` with the column's fixed value. ``diag`` is the block's U_jj as a [count, 1] column.
BeginBlock = Callable[[int, torch.Tensor, torch.Tensor], None]
Column = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


class ColumnSweep:
    """The lazy-block OBS sweep over ``w_t`` (W^T, updated in place) with the factor ``upper``."""

    def __init__(self, w_t: torch.Tensor, upper: torch.Tensor, blocksize: int):
        if blocksize < 1:
            raise ValueError(f"blocksize must be >= 1, got {blocksize}")
        if upper.shape != (w_t.shape[0], w_t.shape[0]):
            raise ValueError(f"inverse Hessian of shape {tuple(upper.shape)} does not match d_in={w_t.shape[0]}")
        self.w_t, self.upper, self.blocksize = w_t, upper, blocksize
        self.start = self.position = 0
        self.errors = w_t[:0]

    def run(self, column: Column, begin_block: BeginBlock | None = None) -> None:
        w_t, upper = self.w_t, self.upper
        for start in range(0, w_t.shape[0], self.blocksize):
            end = min(start + self.blocksize, w_t.shape[0])
            block_t, local = w_t[start:end], upper[start:end, start:end]
            diag = local.diagonal().unsqueeze(1)
            errors_t = torch.empty_like(block_t)
            self.start, self.errors = start, errors_t
            if begin_block is not None:
                begin_block(start, block_t, diag)
            for j in range(end - start):
                self.position = start + j
                column(j, block_t, diag, errors_t[j])
                # OBS update of the columns still free inside the block.
                block_t[j + 1 :].addr_(local[j, j + 1 :], errors_t[j], alpha=-1.0)
            # Lazy batch update: the block's errors reach every later column in one matrix product.
            w_t[end:].addmm_(upper[start:end, end:].t(), errors_t, alpha=-1.0)

    def current(self, positions: torch.Tensor) -> torch.Tensor:
        """Rows ``positions`` (all >= the column being visited) of w_t with every update so far applied.

        Columns of the current block are up to date already; later columns still wait for the lazy
        update of this block's columns visited so far, which is added here (not stored).
        """
        end = self.start + self.errors.shape[0]
        rows = self.w_t[positions].clone()
        later = positions >= end
        done = self.position - self.start
        if done and bool(later.any()):
            pending = self.upper[self.start : self.position][:, positions[later]].t() @ self.errors[:done]
            rows[later] -= pending
        return rows
