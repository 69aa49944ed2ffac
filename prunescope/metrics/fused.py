"""The passes over blocks of logit rows [rows, V] behind :mod:`prunescope.metrics.spaces`, written for speed.

At a 152k vocabulary the metrics read every logit of both models many times; eager PyTorch would spend
that time allocating and page-faulting temporaries, in ``torch.where`` (an order of magnitude slower than
arithmetic on CPU), ``expm1``, ``argmax``, ``logsumexp`` and in Python between small operations. Here
every temporary is a view of one reused :class:`Scratch`; branches are blended with ``lerp`` by a 0/1
weight (exact at 0 and 1); ``e^x − 1`` comes from ``exp`` outside a small interval and from a series
inside it; the argmax scans group maxima; p stays unnormalised (p̃ = exp(z/T − max), Σp̃ = s: every
metric is a ratio in which s cancels); and a block returns per-row sums that :mod:`.spaces` turns into
metrics for the whole chunk at once. The formulas are the cancellation-free ones of :mod:`.spaces`:

- KL = Σ p (e^x − 1 − x), x = log(q/p) = Δz/T − log E_p[e^{Δz/T}]: a sum of non-negative terms;
  e^x − 1 − x is a Taylor series for |x| <= 1/4 (truncation below 4e-7 relative) and exp(x) − 1 − x
  beyond (cancellation below 2e-6 relative there);
- q − p = p (x + (e^x − 1 − x)), accurate when small, with the rounding of log E_p[e^{Δz/T}] taken out
  (Σ(q − p) = 0), which q − p, unlike KL, feels to first order; ‖Δ⊥‖² from the explicit residual Δ − αref;
- weighted variances two-pass (no E[x²] − E[x]² cancellation); the r-centred residual p(Δz − μ_r) is
  formed as p(Δz − μ_p) − (μ_r − μ_p) p.

Rows padded with logit −inf (and Δz = 0) carry no mass: the subspace metrics of ragged option sets use that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Arguments of exp() are floored here: on CPU, exp of an argument whose result is not a normal fp32 (below
# about −87.3) leaves the vectorised path and costs ~250× as much, and real logit rows have many such
# entries in their tail (log p̃ far below the top). Below the floor p̃ and q̃ are set to exactly 0
# (:func:`_exp_`); the two limits below keep what that drops under 1e-11 of the row's mass.
EXP_FLOOR = -87.0
# Where log(q/p) exceeds this, q̃ − p̃ and the KL term come from q̃ = exp(log p̃ + log(q/p)) directly, not
# from p̃ (q/p − 1): a token with p̃ below e^EXP_FLOOR (so 0) can still gain q̃ up to e^(−87 + 60) = 2e-12
# here, and e^x overflows fp32 beyond 88.
DIRECT_LOG_RATIO = 60.0
# Σ e^y (y = log q̃ up to a constant) is summed without first subtracting its maximum only while
# |Δz/T| < this: it is then at least e^−40, so the entries below the floor (at most V e^−87) do not count.
UNSHIFTED_LOG_RATIO = 40.0
_FLOORED = math.exp(EXP_FLOOR) * 1.001  # exp of the floor, with room for its fp32 rounding
# Inside |x| <= this, e^x − 1 − x comes from its Taylor series (terms up to x⁶/720).
_SERIES_LIMIT = 0.25
_SERIES = (1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2)
# Column groups of the argmax scan, widest first: the first that divides V (else plain argmax).
_ARGMAX_GROUPS = (64, 32, 16, 8)
_N_BUFFERS = 7

# Columns of the per-row sums (‖·‖ are norms, squared by the caller).
VECTOR_SUMS = ("ref_sq", "dot", "orth_norm")
SPREAD_SUMS = ("centred_norm", "dz_norm")
PROBABILITY_SUMS = ("s", "p_sq", "p_dp", "orth_norm", "kl", "abs_dp", "var_p", "var_r_norm", "neg_top", "neg_shift")


class Scratch:
    """Reusable fp32 buffers of up to ``rows`` × ``width`` for the passes over one block of rows."""

    def __init__(self, rows: int, width: int, device: torch.device):
        self._store = torch.empty(_N_BUFFERS, rows, width, device=device)
        self.series = [torch.tensor(c, device=device) for c in _SERIES]  # 0-dim: addcmul takes no scalar input
        self._views: dict[int, list[Tensor]] = {}

    @property
    def rows(self) -> int:
        return self._store.shape[1]

    def take(self, like: Tensor) -> list[Tensor]:
        """``_N_BUFFERS`` contiguous buffers shaped like the block ``like`` (its rows may be fewer)."""
        rows, width = like.shape
        if rows > self._store.shape[1] or width != self._store.shape[2]:
            raise ValueError(f"block {tuple(like.shape)} does not fit scratch {tuple(self._store.shape[1:])}")
        if rows not in self._views:
            self._views[rows] = list(self._store[:, :rows])
        return self._views[rows]

    def planes(self, first: int, count: int, like: Tensor) -> Tensor | None:
        """Buffers ``first`` .. ``first + count − 1`` of :meth:`take` as one [count·rows, V] matrix, when
        they are adjacent in memory (a full block); else None."""
        if like.shape[0] != self._store.shape[1]:
            return None
        return self._store[first : first + count].view(-1, self._store.shape[2])


@dataclass(frozen=True)
class ChunkSums:
    """Per-row sums of a chunk: :data:`VECTOR_SUMS` of the logits (None if not asked), the T-independent
    ``var_uniform`` numerator parts (:data:`SPREAD_SUMS`) with ``top1_agree``, and per T the
    :data:`PROBABILITY_SUMS`."""

    vector: Tensor | None
    spread: Tensor
    entries: Tensor  # [n]: V, or the row's real entries
    top1_agree: Tensor
    probability: dict[float, Tensor]


@torch.no_grad()
def chunk_sums(z_ref: Tensor, dz: Tensor, temperatures, scratch: Scratch, counts: Tensor | None = None,
               vector: bool = True, logit_sums: tuple[Tensor, Tensor, Tensor] | None = None) -> ChunkSums:  # fmt: skip
    """All per-row sums of logit rows z_ref, Δz [n, V], ``scratch.rows`` rows at a time.

    ``counts`` ([n]) gives each row's number of real entries, the rest padding (z_ref = −inf, Δz = 0).
    ``logit_sums``: the vector and spread sums and a bound on max |Δz| per row, already computed
    (:meth:`.gram.HeadGram.sums`); else they come from passes over the logits.
    """
    n = z_ref.shape[0]
    new = z_ref.new_empty
    if logit_sums is None:
        vectors = new(n, len(VECTOR_SUMS)) if vector else None
        spread, bounds = new(n, len(SPREAD_SUMS)), None
    else:
        vectors, spread, bound = logit_sums
        bounds = bound.tolist()
    probability = {t: new(n, len(PROBABILITY_SUMS)) for t in temperatures}
    tops = _TopTokens(z_ref, dz)
    for start in range(0, n, scratch.rows):
        rows = slice(start, start + scratch.rows)
        ref, delta = z_ref[rows], dz[rows]
        buffers = scratch.take(ref)
        if bounds is None:
            if vectors is not None:
                torch.stack(vector_sums(ref, delta, buffers), dim=1, out=vectors[rows])
            block_counts = None if counts is None else counts[rows]
            torch.stack(spread_sums(ref, delta, buffers, block_counts), dim=1, out=spread[rows])
        z_max = tops.scan(rows, ref, delta, buffers[0])
        dz_range = _block_range(delta, None if bounds is None else max(bounds[rows]), min(temperatures, default=1.0))
        for t in temperatures:
            sums = probability_sums(ref, delta, t, scratch, z_max, dz_range)
            torch.stack(sums, dim=1, out=probability[t][rows])
    entries = counts.to(z_ref.dtype) if counts is not None else torch.full_like(spread[:, 0], z_ref.shape[1])
    return ChunkSums(vectors, spread, entries, tops.agree(), probability)


def _block_range(delta: Tensor, bound: float | None, coldest: float) -> tuple[float, float]:
    """Bounds on min and max Δz of a block: ±``bound`` when that keeps every fast path of
    :func:`probability_sums` open at the lowest temperature, else the block's own minimum and maximum."""
    if bound is not None and 2 * bound / coldest <= min(DIRECT_LOG_RATIO, 2 * UNSHIFTED_LOG_RATIO):
        return -bound, bound
    return float(delta.amin()), float(delta.amax())


def vector_sums(ref: Tensor, delta: Tensor, buffers: list[Tensor]) -> list[Tensor]:
    """Per row (:data:`VECTOR_SUMS`): ‖ref‖², ref·Δ and ‖Δ − α ref‖ with α = ref·Δ/‖ref‖²."""
    orth = buffers[0]
    ref_sq = _norm(ref).square_()
    dot = _rowdot(ref, delta, orth)
    torch.addcmul(delta, ref, (dot / ref_sq)[:, None], value=-1.0, out=orth)
    return [ref_sq, dot, _norm(orth)]


def spread_sums(z_ref: Tensor, dz: Tensor, buffers: list[Tensor], counts: Tensor | None = None) -> list[Tensor]:
    """Per row (:data:`SPREAD_SUMS`): ‖Δz − mean‖ and ‖Δz‖ (over the real entries)."""
    centred = buffers[0]
    n = dz.shape[-1] if counts is None else counts.to(dz.dtype)[:, None]
    torch.sub(dz, dz.sum(dim=-1, keepdim=True).div_(n), out=centred)
    if counts is not None:  # padding is not part of the row: centre only the real entries
        centred.mul_(torch.isfinite(z_ref))
    return [_norm(centred), _norm(dz)]


def probability_sums(z_ref: Tensor, dz: Tensor, t: float, scratch: Scratch, z_max: Tensor,
                     dz_range: tuple[float, float]) -> list[Tensor]:  # fmt: skip
    """Per row at temperature T, with p̃ = exp(z_ref/T − max z_ref/T), s = Σp̃ (p = p̃/s) and
    Δp̃ = p̃ (q/p − 1): the columns of :data:`PROBABILITY_SUMS`, i.e. s, Σp̃², Σp̃Δp̃, ‖Δp̃ − αp̃‖ (α =
    Σp̃Δp̃/Σp̃²), Σp̃ (q/p − 1 − log(q/p)), Σ|Δp̃|, Σp̃ (Δz − μ_p)², ‖p̃ (Δz − μ_r)‖, −max z_ref/T and
    −log E_p[exp(Δz/T)]. ``z_max`` are the rows' maxima of z_ref; ``dz_range`` bounds Δz in the block.
    """
    # y (e^x − 1 − x), expm1 (q̃ − p̃, later p̃(Δz − μ_p)) and p̃ are adjacent, for one BLAS call per dot group.
    log_p, x, a, b, y, expm1, p = scratch.take(z_ref)
    inv_t = 1.0 / t
    neg_top = z_max.neg() if t == 1.0 else z_max * -inv_t
    if t == 1.0:
        torch.sub(z_ref, z_max[:, None], out=log_p)  # log p̃ <= 0
    else:
        torch.add(neg_top[:, None], z_ref, alpha=inv_t, out=log_p)  # log p̃ <= 0 (up to rounding at the top)
    s = _exp_(torch.clamp(log_p, min=EXP_FLOOR, out=p)).sum(dim=-1)
    # log(q/p) = Δz/T − log E_p[exp(Δz/T)], from the logit difference rather than from two rounded
    # log-softmaxes; E_p divides by Σp̃, which also removes the rounding of the normaliser.
    torch.add(log_p, dz, alpha=inv_t, out=y)
    # y = log p̃ + Δz/T <= max Δz/T, and y >= min Δz/T at the top token (log p̃ = 0): when |Δz/T| < 40,
    # Σ e^y neither overflows nor underflows, and needs no shift by its maximum.
    if max(-dz_range[0], dz_range[1]) * inv_t < UNSHIFTED_LOG_RATIO:
        neg_shift = torch.div(s, _exp_(y.clamp_(min=EXP_FLOOR)).sum(dim=-1)).log_()
    else:
        y_max = y.amax(dim=-1)
        neg_shift = torch.div(s, _exp_(y.sub_(y_max[:, None]).clamp_(min=EXP_FLOOR)).sum(dim=-1)).log_().sub_(y_max)
    torch.add(neg_shift[:, None], dz, alpha=inv_t, out=x)
    excess = _expm1_and_excess(x, y, a, b, scratch.series)
    dp = torch.add(x, excess, out=expm1).mul_(p)  # q̃ − p̃ = p̃ (q/p − 1) = p̃ (log(q/p) + excess)
    # log(q/p) <= max Δz/T − E_p[Δz/T] <= (max Δz − min Δz)/T: look for a large one only when that is large.
    if (dz_range[1] - dz_range[0]) * inv_t > DIRECT_LOG_RATIO and float(x.amax()) > DIRECT_LOG_RATIO:
        overflow = x > DIRECT_LOG_RATIO  # take q − p from q itself there (see DIRECT_LOG_RATIO)
        q = _exp_(torch.add(log_p, x).clamp_(min=EXP_FLOOR))
        dp.copy_(torch.where(overflow, q - p, dp))  # (a rare path, left unfused)
        overflow_kl = torch.where(overflow, dp - p * x, p * excess).sum(dim=-1)
        excess.masked_fill_(overflow, 0.0)  # e^x − 1 − x is infinite there; its KL term is in overflow_kl
    else:
        overflow_kl = None
    # Σ(q̃ − p̃) = 0 exactly; the rounding δ of log E_p[exp(Δz/T)] (about 1e-7, that of a logarithm near 1)
    # makes it s(e^δ − 1) instead, and q − p is first-order in δ: take it out (KL is second-order in δ).
    delta = dp.sum(dim=-1).div_(s)
    dp.addcmul_(p, delta[:, None], value=-1.0)
    neg_shift.sub_(delta)
    kl, p_dp, p_sq = _rowdots(p, [excess, dp, p], scratch.planes(4, 3, z_ref), a)
    kl = kl if overflow_kl is None else overflow_kl
    abs_dp = torch.abs(dp, out=a).sum(dim=-1)
    orth = _norm(torch.addcmul(dp, p, (p_dp / p_sq)[:, None], value=-1.0, out=a))
    # Var_p(Δz) = Σp(Δz − μ_p)²/s and Var_r(Δz) = Σp²(Δz − μ_r)²/Σp², both two-pass, on the unscaled Δz
    # (the caller divides by T²); p(Δz − μ_r) = p(Δz − μ_p) − (μ_r − μ_p) p.
    centred = torch.sub(dz, _rowdot(p, dz, a).div_(s)[:, None], out=expm1)  # q̃ − p̃ is no longer needed
    weighted = torch.mul(centred, p, out=b)
    var_p, shift_r = _rowdots(weighted, [centred, p], scratch.planes(5, 2, z_ref), log_p)
    var_r = _norm(torch.addcmul(weighted, p, (shift_r / p_sq)[:, None], value=-1.0, out=a))
    return [s, p_sq, p_dp, orth, kl, abs_dp, var_p, var_r, neg_top, neg_shift]


class _TopTokens:
    """The first argmax of z_ref and of z_ref + Δz per row, and whether they agree.

    On CPU ``argmax`` is an order of magnitude slower than ``amax``: each block records the maxima of
    column groups, and at the end the first group holding a row's maximum, then the first maximum
    inside it, gives the same index as ``argmax`` (the first maximal one).
    """

    def __init__(self, z_ref: Tensor, dz: Tensor):
        self.z_ref, self.dz = z_ref, dz
        n, vocab = z_ref.shape
        self.group = next((g for g in _ARGMAX_GROUPS if vocab % g == 0 and vocab >= 4 * g), 0)
        if z_ref.device.type != "cpu" or not self.group:
            self.group = 0
            self.index = torch.empty(2, n, dtype=torch.long, device=z_ref.device)
        else:
            self.maxima = z_ref.new_empty(2, n, vocab // self.group)

    def scan(self, rows: slice, ref: Tensor, delta: Tensor, work: Tensor) -> Tensor:
        """Record block ``rows``; return max z_ref per row."""
        z_var = torch.add(ref, delta, out=work)
        if not self.group:
            z_max, self.index[0, rows] = ref.max(dim=-1)
            self.index[1, rows] = z_var.argmax(dim=-1)
            return z_max
        torch.amax(ref.unflatten(-1, (-1, self.group)), dim=-1, out=self.maxima[0, rows])
        torch.amax(z_var.unflatten(-1, (-1, self.group)), dim=-1, out=self.maxima[1, rows])
        return self.maxima[0, rows].amax(dim=-1)

    def agree(self) -> Tensor:
        """1.0 where the argmax of z_ref + Δz is that of z_ref, else 0.0."""
        if not self.group:
            return (self.index[0] == self.index[1]).to(self.z_ref.dtype)
        best_group = self.maxima.argmax(dim=-1)  # [2, n]: the first group with each row's maximum
        rows = torch.arange(self.z_ref.shape[0], device=self.z_ref.device)
        grouped_ref, grouped_dz = (v.unflatten(-1, (-1, self.group)) for v in (self.z_ref, self.dz))
        in_ref = grouped_ref[rows, best_group[0]].argmax(dim=-1)
        in_var = (grouped_ref[rows, best_group[1]] + grouped_dz[rows, best_group[1]]).argmax(dim=-1)
        return ((best_group[0] == best_group[1]) & (in_ref == in_var)).to(self.z_ref.dtype)


def _expm1_and_excess(x: Tensor, excess: Tensor, small: Tensor, series: Tensor, coefficients) -> Tensor:
    """e^x − 1 − x into ``excess``, within a few fp32 roundings relative; ``small``, ``series``: scratch.

    Outside |x| <= 1/4 it comes from exp(x) − 1 − x, whose rounding (of e^x near 1) matters relative to
    the result only for small |x|, where the Taylor series is used instead. x + (e^x − 1 − x) is then
    e^x − 1 to within (|x| + 1)/|e^x − 1| roundings relative: a few, and 130 where e^x ≈ 0 at x = −80.
    """
    # e^x − 1 is exact where e^x is in [1/2, 2]; below EXP_FLOOR, e^x − 1 − x is −1 − x to within 2e-38.
    torch.clamp(x, min=EXP_FLOOR, out=excess).exp_().sub_(1.0).sub_(x)
    torch.clamp(x, -_SERIES_LIMIT, _SERIES_LIMIT, out=small)
    # (((((x/720 + 1/120) x + 1/24) x + 1/6) x + 1/2) x² = e^x − 1 − x up to x⁶/720.
    first, second, *rest = coefficients
    torch.addcmul(second, small, first, out=series)
    for coefficient in rest:
        torch.addcmul(coefficient, series, small, out=series)
    series.mul_(small).mul_(small)
    # lerp(a, b, w) is a + w(b − a) for w < 0.5 and b − (1 − w)(b − a) otherwise: exact at w = 0 and 1;
    # w = 1.0 where |x| <= the limit (the clamp left x as it was).
    return excess.lerp_(series, torch.eq(small, x, out=small))


def _exp_(floored: Tensor) -> Tensor:
    """e^t in place for ``floored`` = max(t, EXP_FLOOR), with exactly 0 where t was at or below the floor."""
    return torch.nn.functional.threshold_(floored.exp_(), _FLOORED, 0.0)


def _norm(a: Tensor) -> Tensor:
    return torch.linalg.vector_norm(a, dim=-1)


def _rowdots(a: Tensor, others: list[Tensor], planes: Tensor | None, work: Tensor) -> list[Tensor]:
    """Σ a·b per row for each b of ``others``; ``planes``: the same as one adjacent matrix (or None)."""
    rows = a.shape[0]
    if planes is None or a.device.type != "cpu" or rows > 4:
        return [_rowdot(a, b, work) for b in others]
    # One BLAS call reads a once: [rows, k·rows], of which the diagonal of each [rows, rows] block is wanted.
    return list(torch.mm(a, planes.T).view(rows, len(others), rows).diagonal(dim1=0, dim2=2))


def _rowdot(a: Tensor, b: Tensor, work: Tensor) -> Tensor:
    """Σ a·b per row. On CPU a few rows go through BLAS (no product written); else via ``work``."""
    rows = a.shape[0]
    if a.device.type == "cpu" and rows <= 4:
        if rows == 1:
            return torch.dot(a[0], b[0])[None]
        return torch.mm(a, b.T).diagonal()
    return torch.mul(a, b, out=work).sum(dim=-1)
