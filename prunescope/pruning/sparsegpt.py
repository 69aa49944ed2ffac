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

Differences from the authors' code, on purpose: the unstructured block mask prunes exactly
``int(numel * sparsity)`` entries with ties broken by index (the reference prunes every entry ``<=`` the
quantile value, one or more extra); pruned entries are written as exact zeros instead of relying on
``w - (w / d) * d`` cancelling. Everything runs in fp32 on the weight's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .masks import n_to_prune, smallest_per_group, smallest_per_matrix


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
    """What the column loop needs from H: U with (H + damp I)^-1 = U^T U, and the dead input columns."""

    upper: torch.Tensor
    dead: torch.Tensor


def inverse_hessian(hessian: torch.Tensor, percdamp: float = 0.01) -> InverseHessian:
    """Damp H and return the upper Cholesky factor of its inverse (step 1-2 of the module docstring).

    Linears that read the same input (q/k/v, gate/up) share H, so this is computed once per input.
    """
    if percdamp <= 0:
        raise ValueError(f"percdamp must be > 0, got {percdamp}")
    h = hessian.detach().float().clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    h.diagonal().add_(percdamp * h.diagonal().mean())
    try:
        lower = torch.linalg.cholesky(h)
        upper = torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
    except torch.linalg.LinAlgError as error:
        raise ValueError(
            f"SparseGPT: the damped Hessian ({h.shape[0]} inputs) is not positive definite with "
            f"percdamp={percdamp}; use more calibration tokens or a larger percdamp"
        ) from error
    return InverseHessian(upper=upper, dead=dead)


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
    w = weight.detach().float().clone()
    w[:, inverse.dead.to(weight.device)] = 0.0
    mask = torch.zeros_like(w, dtype=torch.bool)

    for start in range(0, d_in, blocksize):
        end = min(start + blocksize, d_in)
        block, block_mask, errors = _prune_block(w[:, start:end].clone(), upper[start:end, start:end], sparsity, n_of_m)
        w[:, start:end] = block
        mask[:, start:end] = block_mask
        # Lazy batch update: the block's errors reach every later column in one matrix product.
        w[:, end:].addmm_(errors, upper[start:end, end:], alpha=-1.0)

    mask |= inverse.dead.to(weight.device).unsqueeze(0)
    return w, mask


def _prune_block(
    block: torch.Tensor, upper: torch.Tensor, sparsity: float, n_of_m: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prune one column block in place with OBS updates; return (block, block mask, scaled errors)."""
    rows, count = block.shape
    diag = upper.diagonal()
    if n_of_m is None:
        saliency = block.square() / diag.square().unsqueeze(0)
        mask = smallest_per_matrix(saliency, n_to_prune(saliency.numel(), sparsity))
    else:
        mask = torch.zeros_like(block, dtype=torch.bool)
    errors = torch.zeros_like(block)

    for j in range(count):
        if n_of_m is not None and j % n_of_m[1] == 0:
            n, m = n_of_m
            group = block[:, j : j + m].square() / diag[j : j + m].square().unsqueeze(0)
            mask[:, j : j + m] = smallest_per_group(group, n, m)
        column = block[:, j]
        removed = torch.where(mask[:, j], column, torch.zeros_like(column))
        error = removed / diag[j]
        # OBS update of the columns still free inside the block; column j itself becomes exactly q.
        block[:, j + 1 :].addr_(error, upper[j, j + 1 :], alpha=-1.0)
        block[:, j] = column - removed
        errors[:, j] = error
    return block, mask, errors
