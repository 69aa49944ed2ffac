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
    dead = inverse.dead.to(weight.device)
    # Work on W^T: an input column of W is then a contiguous row, which keeps the per-column loop fast.
    w_t = weight.detach().float().t().contiguous()
    w_t[dead] = 0.0
    mask_t = torch.zeros_like(w_t, dtype=torch.bool)

    for start in range(0, d_in, blocksize):
        end = min(start + blocksize, d_in)
        errors_t = _prune_block(w_t[start:end], mask_t[start:end], upper[start:end, start:end], sparsity, n_of_m)
        # Lazy batch update: the block's errors reach every later column in one matrix product.
        w_t[end:].addmm_(upper[start:end, end:].t(), errors_t, alpha=-1.0)

    mask_t[dead] = True
    w_t.masked_fill_(mask_t, 0.0)  # pruned entries are exact zeros, not w - (w / d) * d
    return w_t.t().contiguous(), mask_t.t().contiguous()


def _prune_block(
    block_t: torch.Tensor, mask_t: torch.Tensor, upper: torch.Tensor, sparsity: float, n_of_m: tuple[int, int] | None
) -> torch.Tensor:
    """Choose the block's mask and apply the OBS updates in place (transposed: row j = input column j).

    Returns the block's errors e_j = w_j / U_jj at pruned entries (zero elsewhere), shaped like the block.
    Pruned entries are left holding their last value; the caller zeroes them once at the end, which is
    the same because later updates only touch columns to the right of the one being pruned.
    """
    count = block_t.shape[0]
    diag = upper.diagonal().unsqueeze(1)
    if n_of_m is None:
        saliency = block_t.square() / diag.square()
        mask_t.copy_(smallest_per_matrix(saliency.t(), n_to_prune(saliency.numel(), sparsity)).t())
        error_scale = mask_t / diag  # e_j = w_j * mask_j / U_jj
    errors_t = torch.empty_like(block_t)

    for j in range(count):
        if n_of_m is not None and j % n_of_m[1] == 0:
            n, m = n_of_m
            saliency = block_t[j : j + m].square() / diag[j : j + m].square()
            mask_t[j : j + m] = smallest_per_group(saliency.t(), n, m).t()
            group_scale = mask_t[j : j + m] / diag[j : j + m]
        scale = error_scale[j] if n_of_m is None else group_scale[j % n_of_m[1]]
        torch.mul(block_t[j], scale, out=errors_t[j])
        # OBS update of the columns still free inside the block.
        block_t[j + 1 :].addr_(upper[j, j + 1 :], errors_t[j], alpha=-1.0)
    return errors_t
