"""Per-row deviations between a reference and a variant in the embedding, logit and probability spaces.

The quantities of He et al., "Demystifying When Pruning Works via Representation Hierarchies"
(arXiv 2603.24652), §3 and §6, for rows h_ref (the dense model; the reference of every metric) and h_var:

- embedding h and logits z = head(h): ``cos``, ``one_minus_cos``, ``para_rel`` = ‖Δ∥‖/‖ref‖,
  ``orth_rel_sq`` = ‖Δ⊥‖²/‖ref‖² and ``theorem1_estimate`` = ‖Δ⊥‖²/(2‖ref‖²) (Theorem 1), with
  Δ = var − ref split parallel / orthogonal to ref;
- probabilities p = softmax(z_ref/T), q = softmax(z_var/T): ``cos``, ``one_minus_cos``, ``kl`` = KL(p‖q),
  ``kl_estimate`` = Var_p(Δz)/(2T²) (Theorem 3), ``cos_estimate`` = Var_r(Δz)/(2T²) with r = p²/Σp²
  (Theorem 2), ``var_uniform`` = Var(Δz) over the vocabulary and ``rms_dz`` (both in logit units, so
  independent of T), ``top1_agree`` (1.0 when the argmax token agrees) and ``total_variation`` = ½Σ|q − p|;
- subspace (multiple-choice options): the probability metrics on the softmax renormalised over the option
  tokens, with ``argmax_agree`` in place of ``top1_agree``, plus the full-vocabulary log-probabilities
  ``logp_ref_{k}`` / ``logp_var_{k}`` of option k.

Everything is computed in fp32 on the device of the inputs, in chunks of rows so that a 152k vocabulary
fits in memory. Small differences are computed without cancellation: 1 − cos from the orthogonal part
(1 − cos = ‖Δ⊥‖²/(‖var‖²(1 + cos))), and KL as Σ p (q/p − 1 − log(q/p)), which equals Σ p (log p − log q)
because Σ q = Σ p, but sums non-negative terms and ignores a rounding error in the normaliser to first order.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

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
        """This head in fp32 on ``device`` (itself when it already is)."""
        tensors = [self.weight, *([self.bias] if self.bias is not None else [])]
        tensors += list(self.norm.parameters()) if self.norm is not None else []
        if all(t.device == device and t.dtype == torch.float32 for t in tensors):
            return self
        norm = copy.deepcopy(self.norm).to(device=device, dtype=torch.float32) if self.norm is not None else None
        bias = self.bias.to(device, torch.float32) if self.bias is not None else None
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
    return {**_probability_metrics(z_ref, dz, temperature)[0], **_logit_difference_metrics(z_ref, dz)}


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
    chunk_rows: int = 64,
) -> RowMetrics:
    """All spaces for rows ``h_ref``, ``h_var`` ([N, d]), projecting each row through ``head`` once.

    ``option_ids`` ([K] shared, or [N, K] per row) adds the subspace metrics. Rows are processed
    ``chunk_rows`` at a time; the results do not depend on the chunking. Raises ``ValueError`` naming the
    row for a non-finite or zero input row, and for any metric that comes out non-finite.
    """
    temps = _check_inputs(h_ref, h_var, head, temperatures, option_ids, chunk_rows)
    device = h_ref.device
    head = head.to(device)
    if option_ids is not None:
        option_ids = option_ids.to(device)
    parts: list[RowMetrics] = []
    for start in range(0, h_ref.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        ids = None if option_ids is None else (option_ids[rows] if option_ids.ndim == 2 else option_ids)
        chunk = _chunk_metrics(h_ref[rows].float(), h_var[rows].to(device).float(), head, temps, ids)
        _check_finite(chunk, start)
        parts.append(chunk)
    return _concat(parts)


def _chunk_metrics(h_ref, h_var, head, temps, option_ids) -> RowMetrics:
    embedding = _vector_metrics(h_ref, h_var - h_ref)
    z_ref = head(h_ref)
    dz = head.difference(h_ref, h_var, z_ref)
    logit = _vector_metrics(z_ref, dz)
    t_free = _logit_difference_metrics(z_ref, dz)
    probability, subspace = {}, {}
    ids = None if option_ids is None else _expand_ids(option_ids, z_ref)
    for t in temps:
        metrics, lse_ref, lse_var = _probability_metrics(z_ref, dz, t)
        probability[t] = {**metrics, **t_free}
        if ids is not None:
            subspace[t] = _subspace_metrics(z_ref, dz, ids, t, lse_ref, lse_var)
    return RowMetrics(embedding, logit, probability, subspace)


def _vector_metrics(ref: Tensor, delta: Tensor) -> dict[str, Tensor]:
    # var = (1 + α)·ref + Δ⊥ exactly, so every quantity follows from ‖ref‖², α and ‖Δ⊥‖².
    ref_sq = _rowdot(ref, ref)
    alpha = _rowdot(ref, delta) / ref_sq
    orth = torch.addcmul(delta, ref, alpha[:, None], value=-1.0)
    orth_rel_sq = _rowdot(orth, orth) / ref_sq
    par_sq = (1.0 + alpha).square()
    cos = (1.0 + alpha) / torch.sqrt(par_sq + orth_rel_sq)
    # 1 − cos = ‖Δ⊥‖²/(‖var‖²(1 + cos)) has no cancellation; for cos ≤ 0 the plain form is exact enough.
    stable = orth_rel_sq / ((par_sq + orth_rel_sq) * (1.0 + cos))
    one_minus_cos = torch.where(cos > 0, stable, 1.0 - cos)
    return {
        "cos": cos,
        "one_minus_cos": one_minus_cos,
        "para_rel": alpha.abs(),
        "orth_rel_sq": orth_rel_sq,
        "theorem1_estimate": orth_rel_sq / 2,
    }


def _probability_metrics(z_ref: Tensor, dz: Tensor, t: float) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Metrics that depend on T, and the log-normalisers logsumexp(z_ref/T), logsumexp(z_var/T)."""
    scaled_ref, scaled_dz = (z_ref, dz) if t == 1.0 else (z_ref / t, dz / t)
    lse_ref = torch.logsumexp(scaled_ref, dim=-1)
    log_p = scaled_ref - lse_ref[:, None]
    p = log_p.exp()
    # log(q/p) = Δz/T − log E_p[exp(Δz/T)], from the logit difference rather than from two rounded
    # log-softmaxes; dividing by Σp removes the rounding of the normaliser, which KL feels to second order.
    log_shift = torch.logsumexp(log_p + scaled_dz, dim=-1) - torch.log(p.sum(dim=-1))
    log_ratio = scaled_dz - log_shift[:, None]
    dp = p * torch.expm1(log_ratio)  # q − p, accurate when small
    overflow = log_ratio > _MAX_LOG_RATIO  # q/p beyond fp32 where p underflows: take q − p directly
    if overflow.any():
        dp = torch.where(overflow, (log_p + log_ratio).exp() - p, dp)
    # KL = Σ p (q/p − 1 − log(q/p)): every term is >= 0, so nothing cancels; the clamp only meets rounding.
    kl = torch.addcmul(dp, p, log_ratio, value=-1.0).sum(dim=-1).clamp_min(0.0)
    r = p.square()
    prob = _vector_metrics(p, dp)
    metrics = {
        "cos": prob["cos"],
        "one_minus_cos": prob["one_minus_cos"],
        "kl": kl,
        "kl_estimate": _weighted_variance(dz, p) / (2 * t * t),
        "cos_estimate": _weighted_variance(dz, r) / (2 * t * t),
        "total_variation": 0.5 * dp.abs().sum(dim=-1),
    }
    return metrics, lse_ref, lse_ref + log_shift


def _logit_difference_metrics(z_ref: Tensor, dz: Tensor) -> dict[str, Tensor]:
    """The probability-space metrics that do not depend on T: spread of Δz and top-1 agreement."""
    z_var_top = (z_ref + dz).argmax(dim=-1)
    return {
        "var_uniform": dz.var(dim=-1, correction=0),
        "rms_dz": torch.linalg.vector_norm(dz, dim=-1) / math.sqrt(dz.shape[-1]),
        "top1_agree": (z_ref.argmax(dim=-1) == z_var_top).float(),
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


def _weighted_variance(x: Tensor, weights: Tensor) -> Tensor:
    """Σ w (x − μ_w)² / Σ w per row, two-pass (no E[x²] − E[x]² cancellation)."""
    total = weights.sum(dim=-1)
    mean = _rowdot(weights, x) / total
    return _rowdot(weights, (x - mean[:, None]).square()) / total


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    return torch.einsum("nv,nv->n", a, b)


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
        _raise_at_first(~torch.isfinite(values), f"{where} is not finite (inputs too large for fp32?) at row", start)


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
