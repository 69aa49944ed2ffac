"""GPTQ: weight-only quantisation with Optimal Brain Surgeon error compensation.

Frantar, Ashkboos, Hoefler and Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers" (ICLR 2023, arXiv 2210.17323), Algorithm 1. For a linear y = W x with
calibration inputs X and H = 2 X X^T (the running mean of :class:`~prunescope.pruning.obs.HessianStats`):

1. Dead inputs get H_ii = 1 and zero weights; H is damped by ``percdamp * mean(diag H)``; U is the
   upper Cholesky factor of H^-1 (:func:`~prunescope.pruning.obs.inverse_hessian`, shared with SparseGPT).
2. Optionally (``act_order``) the columns are visited in order of decreasing H_jj (the paper's
   "act-order" heuristic): inputs with large activations are fixed first, while most columns are
   still free to absorb their error. W's columns and H are permuted, and un-permuted at the end.
3. The lazy-block column sweep of :class:`~prunescope.pruning.obs.ColumnSweep`: column j is rounded to
   its group's grid, q_j = round(w_j), and its error e_j = (w_j - q_j) / U_jj is spread over the
   columns not yet fixed (the same OBS update SparseGPT applies with zero in place of q_j).

The grid of a group (:mod:`.grid`: asymmetric min/max with zero point, ``group_size`` consecutive input
columns of a row, or the whole row) is fixed when the sweep first enters the group, on the weights as
updated by every column fixed before (the reference computes it at the group's first column). With
act-order the sweep reaches a group's columns out of order; its grid is still fixed at the first of
them, on the group's up-to-date values (:meth:`ColumnSweep.current` adds the pending lazy updates), and
groups stay contiguous in the original column order, so the stored format is the same with or without
act-order (the reference instead forms groups of consecutive *permuted* columns and stores an index).
Everything runs in fp32 on the weight's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pruning.obs import ColumnSweep, InverseHessian, inverse_hessian
from .grid import Grid, check_bits, check_group_size, group_params, round_values


@dataclass(frozen=True)
class GPTQHessian:
    """The damped inverse-Hessian factor in sweep order, and that order (None = natural order)."""

    inverse: InverseHessian
    order: torch.Tensor | None


def gptq_hessian(hessian: torch.Tensor, percdamp: float = 0.01, act_order: bool = False) -> GPTQHessian:
    """Prepare H once for every linear that reads the same input (q/k/v, gate/up)."""
    order = None
    if act_order:
        # Stable, so equal diagonals (dead inputs, ties) keep their natural order.
        order = torch.sort(hessian.diagonal(), descending=True, stable=True).indices
        hessian = hessian[order][:, order]
    return GPTQHessian(inverse=inverse_hessian(hessian, percdamp), order=order)


def gptq_quantize(
    weight: torch.Tensor, prepared: GPTQHessian, bits: int, group_size: int | None, blocksize: int = 128
) -> tuple[torch.Tensor, Grid]:
    """Quantise a ``[d_out, d_in]`` weight; return (de-quantised weight in fp32, its grid).

    Every entry of the result is exactly ``(q - zero) * scale`` for an integer code q of its group.
    """
    check_bits(bits)
    d_out, d_in = weight.shape
    check_group_size(group_size, d_in)
    upper = prepared.inverse.upper.to(weight.device)
    dead = prepared.inverse.dead.to(weight.device)
    order = None if prepared.order is None else prepared.order.to(weight.device)
    w_t = weight.detach().float().t()  # row j = input column j: contiguous rows for the sweep
    w_t = (w_t if order is None else w_t[order]).contiguous()
    w_t[dead] = 0.0

    sweep = ColumnSweep(w_t, upper, blocksize)
    rule = _RoundRule(sweep, order, bits, group_size)
    sweep.run(rule.column)

    if order is not None:
        natural = torch.empty_like(w_t)
        natural[order] = w_t
        w_t = natural
    grid = Grid(scale=rule.scale.t().contiguous(), zero=rule.zero.t().contiguous(), bits=bits, group_size=group_size)
    return w_t.t().contiguous(), grid


class _RoundRule:
    """Rounds each column to its group's grid, fixing the grid when the sweep first enters the group."""

    def __init__(self, sweep: ColumnSweep, order: torch.Tensor | None, bits: int, group_size: int | None):
        d_in, d_out = sweep.w_t.shape
        device = sweep.w_t.device
        columns = d_in if group_size is None else group_size
        original = torch.arange(d_in, device=device) if order is None else order  # column at each sweep position
        self.sweep, self.bits, self.maxq = sweep, bits, 2**bits - 1
        self.group_of = (original // columns).tolist()
        # Sweep positions of each group's columns (group g = original columns g*columns .. (g+1)*columns - 1).
        self.positions = torch.argsort(original).reshape(d_in // columns, columns)
        self.scale = torch.ones(d_in // columns, d_out, device=device)
        self.zero = torch.zeros(d_in // columns, d_out, device=device)
        self.fitted = [False] * (d_in // columns)

    def column(self, j: int, block_t: torch.Tensor, diag: torch.Tensor, error: torch.Tensor) -> None:
        group = self.group_of[self.sweep.position]
        if not self.fitted[group]:
            values = self.sweep.current(self.positions[group])  # [columns, d_out], up to date
            self.scale[group], self.zero[group] = group_params(values.t(), self.bits)
            self.fitted[group] = True
        rounded = round_values(block_t[j], self.scale[group], self.zero[group], self.maxq)
        torch.sub(block_t[j], rounded, out=error)
        error.div_(diag[j])
        block_t[j] = rounded
