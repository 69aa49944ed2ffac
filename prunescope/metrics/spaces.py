"""Per-row deviations of a variant from the dense reference in the embedding, logit and probability spaces.

The quantities of He et al., "Demystifying When Pruning Works via Representation Hierarchies"
(arXiv 2603.24652, §3 and §6), for rows h_ref (the dense model, reference of every metric) and h_var:

- embedding h and logits z = head(h): ``cos``, ``one_minus_cos``, ``para_rel`` = ‖Δ∥‖/‖ref‖,
  ``orth_rel_sq`` = ‖Δ⊥‖²/‖ref‖², ``theorem1_estimate`` = ‖Δ⊥‖²/(2‖ref‖²) (Theorem 1); Δ = var − ref;
- p = softmax(z_ref/T), q = softmax(z_var/T): ``cos``, ``one_minus_cos``, ``kl`` = KL(p‖q),
  ``kl_estimate`` = Var_p(Δz)/(2T²) (Theorem 3), ``cos_estimate`` = Var_r(Δz)/(2T²), r = p²/Σp² (Theorem 2),
  ``total_variation`` = ½Σ|q − p|; and three that do not depend on T (:data:`TEMPERATURE_FREE`):
  ``var_uniform`` = Var(Δz) over the vocabulary and ``rms_dz`` = √mean(Δz²) (logit units, Δz not divided
  by T), ``top1_agree`` (1.0 when the argmax tokens agree; argmax z/T = argmax z for every T > 0);
- subspace: the same on the softmax renormalised over each row's option tokens (``argmax_agree`` for
  ``top1_agree``) plus ``logp_ref_{k}`` / ``logp_var_{k}``, the full-vocabulary log-probability at T of
  option k. Option sets may be ragged: rows of ``option_ids`` [N, K] end in :data:`OPTION_PAD` (-1) where a
  row has fewer than K options; each row's metrics use its own options only, and ``logp_*_{k}`` of an
  absent option is NaN (:meth:`RowMetrics.present` says which rows have it; the long table leaves the rest out).

All in fp32 on the inputs' device, ``chunk_rows`` rows at a time so a 152k vocabulary fits in memory; the
passes over the vocabulary are in :mod:`.fused`, and for a head without soft-capping the logit-space norms
and dot products come from its Gram matrix in the hidden space (:mod:`.gram`, float64). Small deviations
are computed without cancellation: 1 − cos = ‖Δ⊥‖²/(‖var‖²(1 + cos)), and KL = Σ p (q/p − 1 − log(q/p)),
equal to Σ p (log p − log q) as Σq = Σp, a sum of non-negative terms.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunescope.metrics.fused import PROBABILITY_SUMS, ChunkSums, Scratch, chunk_sums, vector_sums
from prunescope.metrics.gram import HeadGram

VECTOR_METRICS = ("cos", "one_minus_cos", "para_rel", "orth_rel_sq", "theorem1_estimate")
PROBABILITY_METRICS = (
    "cos", "one_minus_cos", "kl", "kl_estimate", "cos_estimate",
    "var_uniform", "rms_dz", "top1_agree", "total_variation",
)  # fmt: skip
# In the subspace the top-1 agreement is the paper's "argmax within the options"; option log-probs follow.
SUBSPACE_METRICS = tuple("argmax_agree" if m == "top1_agree" else m for m in PROBABILITY_METRICS)
# Probability-type metrics that do not depend on T: stored once, with temperature null.
TEMPERATURE_FREE = {
    "probability": ("var_uniform", "rms_dz", "top1_agree"),
    "subspace": ("var_uniform", "rms_dz", "argmax_agree"),
}
# Marks the end of a row's options in ``option_ids`` [N, K] when it has fewer than K.
OPTION_PAD = -1
_OPTION_LOGP = re.compile(r"logp_(?:ref|var)_(\d+)")
# On CPU: elements per [rows, V] block of the vocabulary passes, so that the few buffers each pass
# touches stay in a core's cache (one row at a 49k vocabulary: 254 rows/s against 220 at two rows and 204
# at 21, tests/benchmarks/bench_metrics.py, 1 thread); and at most this many logits per projected chunk
# (128 MB): the projection is as fast as the bare matmul only from about a hundred rows at a time.
_CPU_BLOCK_ELEMENTS = 1 << 16
_CPU_CHUNK_ELEMENTS = 1 << 25


@dataclass(frozen=True)
class Head:
    """The output head z = softcap·tanh(scale·(W·norm(h) + b)/softcap), each part optional.

    ``logit_scale`` multiplies the logits (Cohere's ``logit_scale``; Granite divides by ``logits_scaling``)
    and ``softcap`` is Gemma-style final logit soft-capping; ``norm`` is the final norm when it is applied.
    """

    weight: Tensor  # [V, d]
    bias: Tensor | None = None  # [V]
    norm: nn.Module | None = None
    logit_scale: float = 1.0
    softcap: float | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)  # the Gram of :meth:`gram`

    def __call__(self, h: Tensor, out: Tensor | None = None) -> Tensor:
        """z = head(h); ``out`` ([rows, V], optional) receives the logits of a linear head without copies."""
        h = self.hidden(h)
        if out is None:
            z = F.linear(h, self.weight, self.bias)
        elif self.bias is None:
            z = torch.mm(h, self.weight.T, out=out)
        else:
            z = torch.addmm(self.bias, h, self.weight.T, out=out)
        if self.logit_scale != 1.0:
            z = z.mul_(self.logit_scale)
        if self.softcap is not None:
            z = z.div_(self.softcap).tanh_().mul_(self.softcap)
        return z

    def hidden(self, h: Tensor) -> Tensor:
        """The rows the linear part of the head sees: h after the final norm, when the head applies it."""
        return h if self.norm is None else self.norm(h)

    def difference(self, h_ref: Tensor, h_var: Tensor, z_ref: Tensor, out: Tensor | None = None) -> Tensor:
        """z_var − z_ref; without soft-capping the head is linear after its norm and projects the
        difference of the hidden rows itself, which avoids cancellation when it is small."""
        if self.softcap is None:
            dz = torch.mm(self.hidden(h_var) - self.hidden(h_ref), self.weight.T, out=out)
            return dz if self.logit_scale == 1.0 else dz.mul_(self.logit_scale)
        return torch.sub(self(h_var), z_ref, out=out)

    def gram(self) -> HeadGram | None:
        """The head's :class:`~prunescope.metrics.gram.HeadGram` (computed once), or None when soft-capped."""
        if self.softcap is not None:
            return None
        if "gram" not in self._cache:
            self._cache["gram"] = HeadGram(self.weight, self.bias, self.logit_scale)
        return self._cache["gram"]

    def to(self, device: torch.device) -> Head:
        """This head in fp32 on ``device``: itself when it is already there."""
        device = torch.device(device)
        tensors = [self.weight, *([] if self.bias is None else [self.bias])]
        tensors += [] if self.norm is None else list(self.norm.parameters()) + list(self.norm.buffers())
        if all(_is_on(t, device) for t in tensors):
            return self
        norm = None if self.norm is None else copy.deepcopy(self.norm).to(device=device, dtype=torch.float32)
        bias = None if self.bias is None else self.bias.to(device, torch.float32)
        return Head(self.weight.to(device, torch.float32), bias, norm, self.logit_scale, self.softcap)


def _is_on(tensor: Tensor, device: torch.device) -> bool:
    same_index = device.index is None or tensor.device.index == device.index
    return tensor.dtype == torch.float32 and tensor.device.type == device.type and same_index


@dataclass(frozen=True)
class RowMetrics:
    """Per-row metrics, each a float32 tensor [N]; probability-type spaces are keyed by temperature.

    ``probability[T]`` holds every probability metric at T, the :data:`TEMPERATURE_FREE` ones included
    (the same values at every T); :meth:`blocks` yields those once. ``option_counts`` ([N]) is each row's
    number of options when the subspace metrics are present.
    """

    embedding: dict[str, Tensor]
    logit: dict[str, Tensor]
    probability: dict[float, dict[str, Tensor]]
    subspace: dict[float, dict[str, Tensor]] = field(default_factory=dict)  # empty without option ids
    option_counts: Tensor | None = None

    def blocks(self):
        """Yield ``(space, temperature or None, metric, values)``; None: the metric does not depend on T."""
        for space, by_name in (("embedding", self.embedding), ("logit", self.logit)):
            for name, values in by_name.items():
                yield space, None, name, values
        for space, by_t in (("probability", self.probability), ("subspace", self.subspace)):
            if not by_t:
                continue
            free = TEMPERATURE_FREE[space]
            first = next(iter(by_t.values()))
            for name in free:
                if name in first:
                    yield space, None, name, first[name]
            for t, by_name in by_t.items():
                for name, values in by_name.items():
                    if name not in free:
                        yield space, t, name, values

    def present(self, space: str, metric: str) -> Tensor | None:
        """Boolean [N]: the rows that have ``metric`` (only an option's log-prob can be absent); None: all."""
        match = _OPTION_LOGP.fullmatch(metric)
        if space != "subspace" or match is None or self.option_counts is None:
            return None
        return self.option_counts > int(match.group(1))


def vector_metrics(ref: Tensor, var: Tensor) -> dict[str, Tensor]:
    """The five embedding/logit-space metrics of rows ``var`` against rows ``ref`` ([N, d] each)."""
    ref = ref.float()
    return _embedding_metrics(ref, var.float() - ref)


def probability_metrics(z_ref: Tensor, z_var: Tensor, temperature: float = 1.0) -> dict[str, Tensor]:
    """The probability-space metrics of logit rows ``z_var`` against ``z_ref`` ([N, V] each) at T."""
    z_ref = z_ref.float()
    t = float(temperature)
    sums = chunk_sums(z_ref, z_var.float() - z_ref, (t,), _scratch(z_ref), vector=False)
    return {**_probability_metrics(sums.probability[t], t), **_difference_metrics(sums)}


def subspace_metrics(z_ref: Tensor, z_var: Tensor, option_ids: Tensor, temperature: float = 1.0) -> dict[str, Tensor]:
    """Probability metrics inside the option tokens ``option_ids`` ([K] or [N, K]) plus their full log-probs."""
    z_ref, z_var = z_ref.float(), z_var.float()
    t = float(temperature)
    lse = torch.logsumexp(z_ref / t, dim=-1), torch.logsumexp(z_var / t, dim=-1)
    return _subspace_metrics(_expand_ids(option_ids, z_ref), z_ref, z_var - z_ref, {t: lse})[t]


@torch.no_grad()
def compute_metrics(
    h_ref: Tensor,
    h_var: Tensor,
    head: Head,
    temperatures=(1.0,),
    option_ids: Tensor | None = None,
    chunk_rows: int = 128,
) -> RowMetrics:
    """All spaces for rows ``h_ref``, ``h_var`` ([N, d]), projecting each row through ``head`` once.

    ``option_ids`` ([K] shared, or [N, K] per row, ending in :data:`OPTION_PAD` where a row has fewer
    options) adds the subspace metrics. Rows are projected at most ``chunk_rows`` at a time (on CPU also
    at most 128 MB of logits); the results do not depend on it beyond the fp32 rounding of the projection.
    Raises ``ValueError`` naming the row for a non-finite or all-zero input row, and for any metric that
    comes out non-finite. Pass a head already on the rows' device.
    """
    temps = _check_inputs(h_ref, h_var, head, temperatures, option_ids, chunk_rows)
    device = h_ref.device
    head = head.to(device)
    if option_ids is not None:
        option_ids = option_ids.to(device)
    vocab = head.weight.shape[0]
    if device.type == "cpu":  # see _CPU_CHUNK_ELEMENTS
        chunk_rows = min(chunk_rows, max(1, _CPU_CHUNK_ELEMENTS // vocab))
    chunk_rows = min(chunk_rows, h_ref.shape[0])
    # On CPU the vocabulary passes run a few rows at a time, so that their buffers stay in cache;
    # a GPU takes the whole chunk at once.
    block = chunk_rows if device.type != "cpu" else min(chunk_rows, max(1, _CPU_BLOCK_ELEMENTS // vocab))
    scratch = Scratch(block, vocab, device)
    logits = torch.empty(2, chunk_rows, vocab, device=device)  # z_ref and Δz, reused by every chunk
    parts: list[RowMetrics] = []
    for start in range(0, h_ref.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        ids = None if option_ids is None else (option_ids[rows] if option_ids.ndim == 2 else option_ids)
        h_rows = h_ref[rows].float(), h_var[rows].to(device).float()
        chunk = _chunk_metrics(*h_rows, head, temps, ids, scratch, logits[:, : h_rows[0].shape[0]])
        _check_finite(chunk, start)
        parts.append(chunk)
    return _concat(parts)


def _chunk_metrics(h_ref, h_var, head, temps, option_ids, scratch: Scratch, logits: Tensor) -> RowMetrics:
    z_ref = head(h_ref, out=logits[0])
    dz = head.difference(h_ref, h_var, z_ref, out=logits[1])
    gram = head.gram()  # a linear head: the logit-space norms and dot products from the hidden rows
    logit_sums = None
    if gram is not None:
        n_ref = head.hidden(h_ref)
        logit_sums = gram.sums(n_ref, head.hidden(h_var) - n_ref)
    sums = chunk_sums(z_ref, dz, temps, scratch, logit_sums=logit_sums)
    free = _difference_metrics(sums)
    probability = {t: _ordered({**_probability_metrics(sums.probability[t], t), **free}, PROBABILITY_METRICS)
                   for t in temps}  # fmt: skip
    subspace, counts = {}, None
    if option_ids is not None:
        ids = _expand_ids(option_ids, z_ref)
        lse = {t: _log_normalisers(sums.probability[t]) for t in temps}
        subspace = _subspace_metrics(ids, z_ref, dz, lse)
        counts = (ids != OPTION_PAD).sum(dim=1)
    embedding = _embedding_metrics(h_ref, h_var - h_ref)
    return RowMetrics(embedding, _vector_metrics(sums.vector), probability, subspace, counts)


def _subspace_metrics(ids: Tensor, z_ref: Tensor, dz: Tensor, lse: dict) -> dict[float, dict[str, Tensor]]:
    """Per T, the metrics of the softmax over each row's options ``ids`` [N, K] (-1: no such option) and
    the options' full-vocabulary log-probabilities, from ``lse[T]`` = logsumexp(z_ref/T), logsumexp(z_var/T).

    An absent option gets logit −inf and Δz = 0 (no mass), and NaN log-probabilities.
    """
    real = ids != OPTION_PAD
    counts = real.sum(dim=1)
    safe = ids.clamp_min(0)
    sub_ref = z_ref.gather(1, safe).masked_fill_(~real, -math.inf)
    sub_dz = dz.gather(1, safe).masked_fill_(~real, 0.0)
    ragged = bool((counts < ids.shape[1]).any())
    temps = tuple(lse)
    sums = chunk_sums(sub_ref, sub_dz, temps, _scratch(sub_ref), counts if ragged else None, vector=False)
    free = _difference_metrics(sums)
    free["argmax_agree"] = free.pop("top1_agree")
    subspace = {}
    for t in temps:
        metrics = {**_probability_metrics(sums.probability[t], t), **free}
        lse_ref, lse_var = lse[t]
        logp_ref = (sub_ref / t - lse_ref[:, None]).masked_fill_(~real, math.nan)
        logp_var = ((sub_ref + sub_dz) / t - lse_var[:, None]).masked_fill_(~real, math.nan)
        for k in range(ids.shape[1]):
            metrics[f"logp_ref_{k}"] = logp_ref[:, k]
            metrics[f"logp_var_{k}"] = logp_var[:, k]
        subspace[t] = _ordered(metrics, SUBSPACE_METRICS)
    return subspace


def _scratch(like: Tensor) -> Scratch:
    return Scratch(like.shape[0], like.shape[1], like.device)


def _log_normalisers(sums: Tensor) -> tuple[Tensor, Tensor]:
    """logsumexp(z_ref/T) and logsumexp(z_var/T) from the sums of :func:`.fused.probability_sums`."""
    s, neg_top, neg_shift = (sums[:, PROBABILITY_SUMS.index(name)] for name in ("s", "neg_top", "neg_shift"))
    lse_ref = s.log() - neg_top
    return lse_ref, lse_ref - neg_shift


def _embedding_metrics(ref: Tensor, delta: Tensor) -> dict[str, Tensor]:
    return _vector_metrics(torch.stack(vector_sums(ref, delta, [torch.empty_like(ref)]), dim=1))


def _vector_metrics(sums: Tensor) -> dict[str, Tensor]:
    """The vector metrics from the per-row sums of :func:`.fused.vector_sums`."""
    ref_sq, dot, orth_norm = sums.unbind(1)
    alpha, orth_rel_sq = dot / ref_sq, orth_norm.square() / ref_sq
    cos, one_minus_cos = _cosines(alpha, orth_rel_sq)
    return {
        "cos": cos,
        "one_minus_cos": one_minus_cos,
        "para_rel": alpha.abs(),
        "orth_rel_sq": orth_rel_sq,
        "theorem1_estimate": orth_rel_sq / 2,
    }


def _difference_metrics(sums: ChunkSums) -> dict[str, Tensor]:
    """The T-independent probability metrics: var_uniform, rms_dz (logit units) and top1_agree."""
    centred_norm, dz_norm = sums.spread[:, 0], sums.spread[:, 1]
    return {
        "var_uniform": centred_norm.square() / sums.entries,
        "rms_dz": dz_norm / sums.entries.sqrt(),
        "top1_agree": sums.top1_agree,
    }


def _probability_metrics(sums: Tensor, t: float) -> dict[str, Tensor]:
    """The T-dependent metrics from the per-row sums of :func:`.fused.probability_sums` (p̃ = s·p)."""
    s, p_sq, p_dp, orth_norm, kl, abs_dp, var_p, var_r_norm = sums[:, :8].unbind(1)
    cos, one_minus_cos = _cosines(p_dp / p_sq, orth_norm.square() / p_sq)
    return {
        "cos": cos,
        "one_minus_cos": one_minus_cos,
        "kl": (kl / s).clamp_min(0.0),  # the clamp only meets rounding
        "kl_estimate": var_p / s / (2 * t * t),
        "cos_estimate": var_r_norm.square() / p_sq / (2 * t * t),
        "total_variation": 0.5 * abs_dp / s,
    }


def _cosines(alpha: Tensor, orth_rel_sq: Tensor) -> tuple[Tensor, Tensor]:
    """cos(ref, var) and 1 − cos; ‖Δ⊥‖²/(‖var‖²(1 + cos)) does not cancel (for cos <= 0, 1 − cos is fine)."""
    par_sq = (1.0 + alpha).square()
    cos = (1.0 + alpha) / torch.sqrt(par_sq + orth_rel_sq)
    stable = orth_rel_sq / ((par_sq + orth_rel_sq) * (1.0 + cos))
    return cos, torch.where(cos > 0, stable, 1.0 - cos)


def _ordered(metrics: dict[str, Tensor], order: tuple[str, ...]) -> dict[str, Tensor]:
    """``metrics`` with the names of ``order`` first, in that order (the option log-probs follow)."""
    return {**{name: metrics[name] for name in order}, **{k: v for k, v in metrics.items() if k not in order}}


def _cat_dicts(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.cat([d[k] for d in parts]) for k in parts[0]}


def _expand_ids(option_ids: Tensor, z: Tensor) -> Tensor:
    ids = option_ids.to(z.device, torch.long)
    return ids.expand(z.shape[0], -1) if ids.ndim == 1 else ids


def _check_inputs(h_ref, h_var, head, temperatures, option_ids, chunk_rows) -> tuple[float, ...]:
    if h_ref.ndim != 2 or h_ref.shape != h_var.shape:
        raise ValueError(f"h_ref and h_var must both be [N, d]; got {tuple(h_ref.shape)} and {tuple(h_var.shape)}")
    n, d = h_ref.shape
    if n == 0:
        raise ValueError("no rows: h_ref and h_var are empty")
    vocab, d_head = head.weight.shape
    if d != d_head:
        raise ValueError(f"rows have width {d} but the head expects {d_head} (weight {vocab}×{d_head})")
    temps = tuple(float(t) for t in temperatures)
    if not temps or any(not (math.isfinite(t) and t > 0) for t in temps):
        raise ValueError(f"temperatures must be a non-empty list of finite numbers > 0; got {list(temperatures)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1; got {chunk_rows}")
    for name, h in (("h_ref", h_ref), ("h_var", h_var)):
        _raise_at_first(~torch.isfinite(h).all(dim=1), f"{name} has a non-finite value (nan/inf) in row")
    _raise_at_first(~(h_ref != 0).any(dim=1), "h_ref is all zeros (cosine undefined) in row")
    if option_ids is not None:
        _check_option_ids(option_ids, n, vocab)
    return temps


def _check_option_ids(ids: Tensor, n: int, vocab: int) -> None:
    if ids.dtype.is_floating_point or ids.ndim not in (1, 2) or (ids.ndim == 2 and ids.shape[0] != n):
        raise ValueError(f"option_ids must be integer [K] or [N={n}, K]; got {ids.dtype} {tuple(ids.shape)}")
    rows = ids if ids.ndim == 2 else ids[None]
    real = rows != OPTION_PAD if ids.ndim == 2 else torch.ones_like(rows, dtype=torch.bool)
    values = rows[real]
    if values.numel() and (values.min() < 0 or values.max() >= vocab):
        pad = f" (or {OPTION_PAD} after a row's last option)" if ids.ndim == 2 else ""
        raise ValueError(f"option_ids must lie in [0, {vocab}){pad}; got {values.min().item()}..{values.max().item()}")
    _raise_at_first(real.sum(dim=1) < 2, "option_ids needs at least 2 options per row; fewer in row")
    after_pad = (real[:, 1:] & ~real[:, :-1]).any(dim=1)
    _raise_at_first(after_pad, f"option_ids has an option after the pad {OPTION_PAD} in row")
    sorted_ids = rows.masked_fill(~real, OPTION_PAD).sort(dim=1).values
    repeats = (sorted_ids[:, 1:] == sorted_ids[:, :-1]) & (sorted_ids[:, 1:] != OPTION_PAD)
    _raise_at_first(repeats.any(dim=1), "option_ids repeat a token id in row")


def _check_finite(chunk: RowMetrics, start: int) -> None:
    for space, t, name, values in chunk.blocks():
        where = f"metric {name!r} (space {space}" + (f", T={t})" if t is not None else ")")
        bad = ~torch.isfinite(values)
        present = chunk.present(space, name)
        if present is not None:
            bad &= present
        _raise_at_first(bad, f"{where} is not finite (input too large for fp32?) at row", start)


def _raise_at_first(bad: Tensor, message: str, offset: int = 0) -> None:
    if bad.any():
        raise ValueError(f"{message} {offset + int(bad.nonzero()[0, 0])}")


def _concat(parts: list[RowMetrics]) -> RowMetrics:
    first = parts[0]
    cat = _cat_dicts

    counts = None if first.option_counts is None else torch.cat([p.option_counts for p in parts])
    return RowMetrics(
        embedding=cat([p.embedding for p in parts]),
        logit=cat([p.logit for p in parts]),
        probability={t: cat([p.probability[t] for p in parts]) for t in first.probability},
        subspace={t: cat([p.subspace[t] for p in parts]) for t in first.subspace},
        option_counts=counts,
    )
