"""Per-row deviations of a variant from the dense reference in the embedding, logit and probability spaces.

The quantities of He et al., "Demystifying When Pruning Works via Representation Hierarchies"
(arXiv 2603.24652, §3 and §6), for rows h_ref (the dense model, reference of every metric) and h_var:

- embedding h and logits z = head(h): ``cos``, ``one_minus_cos``, ``para_rel`` = ‖Δ∥‖/‖ref‖,
  ``orth_rel_sq`` = ‖Δ⊥‖²/‖ref‖², ``theorem1_estimate`` = ‖Δ⊥‖²/(2‖ref‖²) (Theorem 1); Δ = var − ref;
- p = softmax(z_ref/T), q = softmax(z_var/T): ``cos``, ``one_minus_cos``, ``kl`` = KL(p‖q),
  ``kl_estimate`` = Var_p(Δz)/(2T²) (Theorem 3), ``cos_estimate`` = Var_r(Δz)/(2T²), r = p²/Σp² (Theorem 2),
  ``var_uniform`` = Var(Δz) over the vocabulary and ``rms_dz`` = √mean(Δz²) (logit units, independent of
  T), ``top1_agree`` (1.0 when the argmax tokens agree), ``total_variation`` = ½Σ|q − p|;
- subspace: the same on the softmax renormalised over option tokens (``argmax_agree`` for ``top1_agree``)
  plus ``logp_ref_{k}`` / ``logp_var_{k}``, the full-vocabulary log-probability of option k.

All in fp32 on the inputs' device, ``chunk_rows`` rows at a time so a 152k vocabulary fits in memory.
Small deviations are computed without cancellation: 1 − cos = ‖Δ⊥‖²/(‖var‖²(1 + cos)), and
KL = Σ p (q/p − 1 − log(q/p)), equal to Σ p (log p − log q) as Σq = Σp, a sum of non-negative terms.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VECTOR_METRICS = ("cos", "one_minus_cos", "para_rel", "orth_rel_sq", "theorem1_estimate")
PROBABILITY_METRICS = (
    "cos", "one_minus_cos", "kl", "kl_estimate", "cos_estimate",
    "var_uniform", "rms_dz", "top1_agree", "total_variation",
)  # fmt: skip
# In the subspace the top-1 agreement is the paper's "argmax within the options"; option log-probs follow.
SUBSPACE_METRICS = tuple("argmax_agree" if m == "top1_agree" else m for m in PROBABILITY_METRICS)
# exp() of more than this overflows fp32 (max ≈ e^88.7).
_MAX_LOG_RATIO = 80.0
# On CPU: elements per [rows, V] temporary of the metric passes, to stay in a core's cache (2 MB of fp32),
# and per projected chunk (32 MB): glibc keeps freed blocks for reuse only after it has freed a
# block of at most 32 MB; otherwise every temporary is mapped afresh and page-faults (3x slower at 152k).
_CPU_BLOCK_ELEMENTS = 1 << 19
_CPU_CHUNK_ELEMENTS = 1 << 23


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

    def __call__(self, h: Tensor) -> Tensor:
        if self.norm is not None:
            h = self.norm(h)
        z = F.linear(h, self.weight, self.bias)
        if self.logit_scale != 1.0:
            z = z * self.logit_scale
        if self.softcap is not None:
            z = self.softcap * torch.tanh(z / self.softcap)
        return z

    def difference(self, h_ref: Tensor, h_var: Tensor, z_ref: Tensor) -> Tensor:
        """z_var − z_ref; a linear head projects Δh itself, which avoids cancellation when Δh is small."""
        if self.norm is None and self.softcap is None:
            return F.linear(h_var - h_ref, self.weight) * self.logit_scale
        return self(h_var) - z_ref

    def to(self, device: torch.device) -> Head:
        """This head in fp32 on ``device`` (tensors already there in fp32 are not copied)."""
        norm = None if self.norm is None else copy.deepcopy(self.norm).to(device=device, dtype=torch.float32)
        bias = None if self.bias is None else self.bias.to(device, torch.float32)
        return Head(self.weight.to(device, torch.float32), bias, norm, self.logit_scale, self.softcap)


@dataclass(frozen=True)
class RowMetrics:
    """Per-row metrics, each a float32 tensor [N]; probability-type spaces are keyed by temperature."""

    embedding: dict[str, Tensor]
    logit: dict[str, Tensor]
    probability: dict[float, dict[str, Tensor]]
    subspace: dict[float, dict[str, Tensor]] = field(default_factory=dict)  # empty without option ids

    def blocks(self):
        """Yield ``(space, temperature or None, metric, values)``; None: the metric does not depend on T."""
        for space, by_name in (("embedding", self.embedding), ("logit", self.logit)):
            for name, values in by_name.items():
                yield space, None, name, values
        for space, by_t in (("probability", self.probability), ("subspace", self.subspace)):
            for t, by_name in by_t.items():
                for name, values in by_name.items():
                    yield space, t, name, values


def vector_metrics(ref: Tensor, var: Tensor) -> dict[str, Tensor]:
    """The five embedding/logit-space metrics of rows ``var`` against rows ``ref`` ([N, d] each)."""
    ref = ref.float()
    return _vector_metrics(ref, var.float() - ref)


def probability_metrics(z_ref: Tensor, z_var: Tensor, temperature: float = 1.0) -> dict[str, Tensor]:
    """The probability-space metrics of logit rows ``z_var`` against ``z_ref`` ([N, V] each) at T."""
    z_ref = z_ref.float()
    dz = z_var.float() - z_ref
    return {**_probability_metrics(z_ref, dz, float(temperature))[0], **_logit_difference_metrics(z_ref, dz)}


def subspace_metrics(z_ref: Tensor, z_var: Tensor, option_ids: Tensor, temperature: float = 1.0) -> dict[str, Tensor]:
    """Probability metrics inside the option tokens ``option_ids`` ([K] or [N, K]) plus their full log-probs."""
    z_ref, z_var = z_ref.float(), z_var.float()
    lse_ref = torch.logsumexp(z_ref / temperature, dim=-1)
    lse_var = torch.logsumexp(z_var / temperature, dim=-1)
    ids = _expand_ids(option_ids, z_ref)
    return _subspace_metrics(z_ref, z_var - z_ref, ids, temperature, lse_ref, lse_var)


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

    ``option_ids`` ([K] shared, or [N, K] per row) adds the subspace metrics. Rows are projected at most
    ``chunk_rows`` at a time (on CPU also at most 32 MB of logits); the results do not depend on it beyond
    the fp32 rounding of the projection. Raises ``ValueError`` naming the row for a non-finite or all-zero
    input row, and for any metric that comes out non-finite. Pass a head already on the rows' device.
    """
    temps = _check_inputs(h_ref, h_var, head, temperatures, option_ids, chunk_rows)
    device = h_ref.device
    head = head.to(device)
    if option_ids is not None:
        option_ids = option_ids.to(device)
    if device.type == "cpu":  # see _CPU_CHUNK_ELEMENTS
        chunk_rows = min(chunk_rows, max(1, _CPU_CHUNK_ELEMENTS // head.weight.shape[0]))
    parts: list[RowMetrics] = []
    for start in range(0, h_ref.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        ids = None if option_ids is None else (option_ids[rows] if option_ids.ndim == 2 else option_ids)
        chunk = _chunk_metrics(h_ref[rows].float(), h_var[rows].to(device).float(), head, temps, ids)
        _check_finite(chunk, start)
        parts.append(chunk)
    return _concat(parts)


def _chunk_metrics(h_ref, h_var, head, temps, option_ids) -> RowMetrics:
    z_ref = head(h_ref)
    dz = head.difference(h_ref, h_var, z_ref)
    ids = None if option_ids is None else _expand_ids(option_ids, z_ref)
    # On CPU the many passes over [rows, V] run a few rows at a time, so that each temporary stays in
    # cache (about 3x faster at V = 49k); a GPU takes the whole chunk at once.
    n, vocab = z_ref.shape
    block = n if z_ref.device.type != "cpu" else max(1, _CPU_BLOCK_ELEMENTS // vocab)
    blocks = []
    for start in range(0, n, block):
        rows = slice(start, start + block)
        blocks.append(_logit_space_metrics(z_ref[rows], dz[rows], temps, None if ids is None else ids[rows]))
    return replace(_concat(blocks), embedding=_vector_metrics(h_ref, h_var - h_ref))


def _logit_space_metrics(z_ref, dz, temps, ids) -> RowMetrics:
    """Logit, probability and subspace metrics (the embedding space is left empty)."""
    t_free = _logit_difference_metrics(z_ref, dz)
    probability, subspace = {}, {}
    for t in temps:
        metrics, lse_ref, lse_var = _probability_metrics(z_ref, dz, t)
        probability[t] = {**metrics, **t_free}
        if ids is not None:
            subspace[t] = _subspace_metrics(z_ref, dz, ids, t, lse_ref, lse_var)
    return RowMetrics({}, _vector_metrics(z_ref, dz), probability, subspace)


def _vector_metrics(ref: Tensor, delta: Tensor) -> dict[str, Tensor]:
    _, alpha, orth_rel_sq = _decompose(ref, delta)
    cos, one_minus_cos = _cosines(alpha, orth_rel_sq)
    return {
        "cos": cos,
        "one_minus_cos": one_minus_cos,
        "para_rel": alpha.abs(),
        "orth_rel_sq": orth_rel_sq,
        "theorem1_estimate": orth_rel_sq / 2,
    }


def _decompose(ref: Tensor, delta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """‖ref‖², α = ref·Δ/‖ref‖² and ‖Δ⊥‖²/‖ref‖², where var = (1 + α)·ref + Δ⊥ exactly."""
    ref_sq = _rowdot(ref, ref)
    alpha = _rowdot(ref, delta) / ref_sq
    orth = torch.addcmul(delta, ref, alpha[:, None], value=-1.0)
    return ref_sq, alpha, _rowdot(orth, orth) / ref_sq


def _cosines(alpha: Tensor, orth_rel_sq: Tensor) -> tuple[Tensor, Tensor]:
    """cos(ref, var) and 1 − cos; ‖Δ⊥‖²/(‖var‖²(1 + cos)) does not cancel (for cos <= 0, 1 − cos is fine)."""
    par_sq = (1.0 + alpha).square()
    cos = (1.0 + alpha) / torch.sqrt(par_sq + orth_rel_sq)
    stable = orth_rel_sq / ((par_sq + orth_rel_sq) * (1.0 + cos))
    return cos, torch.where(cos > 0, stable, 1.0 - cos)


def _probability_metrics(z_ref: Tensor, dz: Tensor, t: float) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Metrics that depend on T, and the log-normalisers logsumexp(z/T) of the reference and the variant."""
    scaled_ref, scaled_dz = (z_ref, dz) if t == 1.0 else (z_ref / t, dz / t)
    log_p = torch.log_softmax(scaled_ref, dim=-1)
    p = log_p.exp()
    p_sum = p.sum(dim=-1)
    # log(q/p) = Δz/T − log E_p[exp(Δz/T)], from the logit difference rather than from two rounded
    # log-softmaxes; dividing by Σp removes the rounding of the normaliser, which KL feels to second order.
    log_shift = torch.logsumexp(log_p + scaled_dz, dim=-1) - p_sum.log()
    log_ratio = scaled_dz - log_shift[:, None]
    ratio_m1 = log_ratio.expm1()  # q/p − 1
    dp = p * ratio_m1  # q − p, accurate when small
    # KL = Σ p (q/p − 1 − log(q/p)): every term is >= 0, so the sum does not cancel.
    kl_terms = p * _expm1_minus_identity(log_ratio, ratio_m1)
    if log_ratio.max() > _MAX_LOG_RATIO:  # q/p beyond fp32 where p underflows: take q − p directly
        overflow = log_ratio > _MAX_LOG_RATIO
        dp = torch.where(overflow, (log_p + log_ratio).exp() - p, dp)
        kl_terms = torch.where(overflow, dp - p * log_ratio, kl_terms)
    p_sq, alpha, orth_rel_sq = _decompose(p, dp)
    cos, one_minus_cos = _cosines(alpha, orth_rel_sq)
    # Var_p(Δz) and Var_r(Δz) with r = p²/Σp², both two-pass (no E[x²] − E[x]² cancellation).
    p_dz = p * dz
    mean_p = p_dz.sum(dim=-1) / p_sum
    mean_r = _rowdot(p, p_dz) / p_sq
    var_p = _rowdot(p, (dz - mean_p[:, None]).square()) / p_sum
    var_r = (p * (dz - mean_r[:, None])).square().sum(dim=-1) / p_sq
    metrics = {
        "cos": cos,
        "one_minus_cos": one_minus_cos,
        "kl": kl_terms.sum(dim=-1).clamp_min(0.0),  # the clamp only meets rounding
        "kl_estimate": var_p / (2 * t * t),
        "cos_estimate": var_r / (2 * t * t),
        "total_variation": 0.5 * dp.abs().sum(dim=-1),
    }
    # At the top token, log p = z/T − logsumexp(z/T) holds with the least rounding.
    lse_ref = scaled_ref.amax(dim=-1) - log_p.amax(dim=-1)
    return metrics, lse_ref, lse_ref + log_shift


def _logit_difference_metrics(z_ref: Tensor, dz: Tensor) -> dict[str, Tensor]:
    """The probability-space metrics that do not depend on T: spread of Δz and top-1 agreement."""
    centred = dz - dz.mean(dim=-1, keepdim=True)
    return {
        "var_uniform": _rowdot(centred, centred) / dz.shape[-1],
        "rms_dz": torch.linalg.vector_norm(dz, dim=-1) / math.sqrt(dz.shape[-1]),
        "top1_agree": (z_ref.argmax(dim=-1) == (z_ref + dz).argmax(dim=-1)).float(),
    }


def _subspace_metrics(z_ref, dz, ids, t, lse_ref, lse_var) -> dict[str, Tensor]:
    sub_ref, sub_dz = z_ref.gather(1, ids), dz.gather(1, ids)
    sub_var = sub_ref + sub_dz
    metrics = {**_probability_metrics(sub_ref, sub_dz, t)[0], **_logit_difference_metrics(sub_ref, sub_dz)}
    metrics = {("argmax_agree" if k == "top1_agree" else k): v for k, v in metrics.items()}
    logp_ref = sub_ref / t - lse_ref[:, None]
    logp_var = sub_var / t - lse_var[:, None]
    for k in range(ids.shape[1]):
        metrics[f"logp_ref_{k}"] = logp_ref[:, k]
        metrics[f"logp_var_{k}"] = logp_var[:, k]
    return metrics


def _expm1_minus_identity(x: Tensor, expm1_x: Tensor) -> Tensor:
    """e^x − 1 − x; for |x| < 0.1 from its Taylor series, since the difference loses digits like eps/x."""
    x_sq = x.square()
    series = x.mul(1 / 120).add_(1 / 24).mul_(x).add_(1 / 6).mul_(x).add_(1 / 2).mul_(x_sq)
    return torch.where(x_sq < 0.01, series, expm1_x - x)  # series error there: x⁴/360 relative


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.vecdot(a, b, dim=-1)


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
    if ids.shape[-1] < 2:
        raise ValueError(f"option_ids needs at least 2 options per row; got {ids.shape[-1]}")
    if ids.min() < 0 or ids.max() >= vocab:
        raise ValueError(f"option_ids must lie in [0, {vocab}); got {ids.min().item()}..{ids.max().item()}")
    rows = ids if ids.ndim == 2 else ids[None]
    sorted_ids = rows.sort(dim=1).values
    _raise_at_first((sorted_ids[:, 1:] == sorted_ids[:, :-1]).any(dim=1), "option_ids repeat a token id in row")


def _check_finite(chunk: RowMetrics, start: int) -> None:
    for space, t, name, values in chunk.blocks():
        where = f"metric {name!r} (space {space}" + (f", T={t})" if t is not None else ")")
        _raise_at_first(~torch.isfinite(values), f"{where} is not finite (input too large for fp32?) at row", start)


def _raise_at_first(bad: Tensor, message: str, offset: int = 0) -> None:
    if bad.any():
        raise ValueError(f"{message} {offset + int(bad.nonzero()[0, 0])}")


def _concat(parts: list[RowMetrics]) -> RowMetrics:
    def cat(dicts):
        return {k: torch.cat([d[k] for d in dicts]) for k in dicts[0]}

    first = parts[0]
    return RowMetrics(
        embedding=cat([p.embedding for p in parts]),
        logit=cat([p.logit for p in parts]),
        probability={t: cat([p.probability[t] for p in parts]) for t in first.probability},
        subspace={t: cat([p.subspace[t] for p in parts]) for t in first.subspace},
    )
