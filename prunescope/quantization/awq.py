"""AWQ: activation-aware weight quantisation by per-input-channel scaling, then round-to-nearest.

Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan and Han, "AWQ: Activation-aware Weight Quantization for
On-Device LLM Compression and Acceleration" (MLSys 2024, arXiv 2306.00978), Sec. 3.2. Weights that meet
large activations matter most; scaling input channel j of a linear up by s_j before rounding (and its
input down by 1/s_j) shrinks their relative rounding error. For a group of linears that read the same
input x, with a_j = mean over calibration tokens of |x_j|:

    s = a^alpha / sqrt(max(a^alpha) * min(a^alpha)),      alpha in {0, 1/n, ..., (n-1)/n}   (n = ``grid``)

and alpha is chosen per group to minimise the output error of the group's linears,

    sum_linears || Q(W diag(s)) diag(s)^-1 X - W X ||^2  =  n/2 sum_linears tr(dW H dW^T),

computed from the same Hessian H = 2/n X X^T that GPTQ uses (exact, and cheaper than re-running the
linears when there are more tokens than inputs). alpha = 0 is s = 1, plain RTN, so the chosen scales
never do worse than RTN on the calibration data. Q is :func:`.rtn.rtn_quantize`.

The groups of a decoder layer and where 1/s goes (the paper's "fold into the previous operator"):

- q, k, v (input: the attention pre-norm): the norm weight becomes w / s;
- o (input: the attention values): the rows of v_proj (and its bias) become rows / s. With grouped-query
  attention a v channel feeds ``n_rep`` query heads, so o's scale is tied across them: a_j of a v channel
  is the mean over its heads' o inputs, and o's column scale repeats s per head;
- gate, up (input: the MLP pre-norm): the norm weight becomes w / s;
- down (input: act(gate) * up): the rows of up_proj (and its bias) become rows / s.

Every scale is found on the layer as it came in (statistics of one pass), then all are folded and every
linear, already scaled, is rounded with RTN. The stored checkpoint is therefore a stock model: norm
weights w / s, and linears whose weights are exactly grid values of Q(W diag(s)) (v_proj and up_proj:
Q(diag(1/s_out) W diag(s_in)), which is diag(1/s_out) Q(W diag(s_in)) since row scaling commutes with
per-row grids). Inference costs nothing extra. The clipping search of the reference implementation is
not part of this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..adapter import LayerParts
from ..pruning.obs import HessianStats
from .grid import Grid, check_bits, check_group_size
from .rtn import rtn_quantize

MIN_ACTIVATION = 1e-4  # as the reference: a channel that is (almost) never active still gets a finite scale


class ActivationStats(HessianStats):
    """H = 2/n sum x x^T (fp32 running mean) plus sum |x_j| per input channel (float64)."""

    def __init__(self, d_in: int, device: torch.device | str = "cpu"):
        super().__init__(d_in, device)
        self.abs_sum = torch.zeros(d_in, dtype=torch.float64, device=device)

    def add(self, inputs: torch.Tensor) -> None:
        super().add(inputs)
        self.abs_sum += inputs.detach().reshape(-1, inputs.shape[-1]).abs().sum(dim=0, dtype=torch.float64)

    @property
    def abs_mean(self) -> torch.Tensor:
        """a_j = mean |x_j| over every token seen (fp32)."""
        return (self.abs_sum / max(self.n_tokens, 1)).float()


@dataclass(frozen=True)
class ScaleChoice:
    """The chosen exponent, the input-channel scale s, and the group's output error with it and with s = 1."""

    alpha: float
    scale: torch.Tensor
    error: float
    rtn_error: float


@dataclass(frozen=True)
class AWQLinear:
    """One quantised linear: its grid (over the stored, scaled weight) and the scales that map it back.

    The linear's function in the original model's coordinates is diag(row_scale) W_stored diag(1/column_scale).
    """

    grid: Grid
    column_scale: torch.Tensor
    row_scale: torch.Tensor | None
    alpha: float | None


def output_error(weight: torch.Tensor, approx: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """tr(dW H dW^T) = (2/n) ||(W - W') X||_F^2 for H = 2/n X X^T (fp32 scalar tensor)."""
    delta = weight.float() - approx.float()
    return ((delta @ hessian) * delta).sum()


def awq_scales(
    a: torch.Tensor, weights: list[torch.Tensor], hessian: torch.Tensor, bits: int, group_size: int | None,
    grid: int = 20, expand=None,
) -> ScaleChoice:
    """Grid search of alpha for the linears ``weights`` that read one input with mean magnitudes ``a``.

    ``expand`` maps s to the linears' column scale when s is tied (o_proj under grouped-query
    attention: ``a`` and s have one entry per v channel); ``hessian`` is over the linears' full input.
    """
    check_grid(grid)
    base = a.float().clamp(min=MIN_ACTIVATION)
    weights = [w.float() for w in weights]
    errors = []
    for step in range(grid):
        s = base.pow(step / grid)
        s = s / (s.max() * s.min()).sqrt()  # only the ratios matter; this keeps W diag(s) near W's range
        column = s if expand is None else expand(s)
        error = sum(float(output_error(w, rtn_quantize(w * column, bits, group_size)[0] / column, hessian)) for w in weights)
        errors.append((error, step, s))
    error, step, s = min(errors, key=lambda item: item[:2])  # ties keep the smaller alpha
    return ScaleChoice(alpha=step / grid, scale=s, error=error, rtn_error=errors[0][0])


def check_grid(grid: int) -> None:
    if not isinstance(grid, int) or grid < 2:
        raise ValueError(f"awq_grid must be an integer >= 2 (alpha = 0 and at least one more), got {grid!r}")


def v_to_o_tie(layer: LayerParts) -> int:
    """How many query heads share each v channel (o_proj.in_features / v_proj.out_features)."""
    linears = layer.linears()
    v, o = linears["self_attn.v_proj"], linears["self_attn.o_proj"]
    if o.in_features % v.out_features:
        raise ValueError(f"layer {layer.index}: o_proj d_in={o.in_features} is not a multiple of v_proj "
                         f"d_out={v.out_features}; AWQ cannot fold o_proj's scales into v_proj")
    return o.in_features // v.out_features


def head_dim_of(layer: LayerParts) -> int:
    head_dim = getattr(layer.attn, "head_dim", None)
    if not isinstance(head_dim, int):
        raise ValueError(f"layer {layer.index}: AWQ needs the attention module's head_dim to tie o_proj's scales")
    return head_dim


QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
O = ("self_attn.o_proj",)
GATE_UP = ("mlp.gate_proj", "mlp.up_proj")
DOWN = ("mlp.down_proj",)
SCALE_GROUPS = (QKV, O, GATE_UP, DOWN)  # the same input groups as prunescope.pruning.SHARED_INPUTS


class _Heads:
    """How o_proj's inputs map onto v_proj's outputs: query head h reads kv head h // tie."""

    def __init__(self, layer: LayerParts, linears: dict[str, nn.Linear]):
        self.tie, self.head_dim = v_to_o_tie(layer), head_dim_of(layer)
        self.kv_heads = linears["self_attn.v_proj"].out_features // self.head_dim

    def expand(self, s: torch.Tensor) -> torch.Tensor:
        """Per v channel -> per o input."""
        return s.reshape(self.kv_heads, 1, self.head_dim).expand(-1, self.tie, -1).reshape(-1)

    def reduce(self, a: torch.Tensor) -> torch.Tensor:
        """Per o input -> per v channel: the mean over the query heads sharing it."""
        return a.reshape(self.kv_heads, self.tie, self.head_dim).mean(dim=1).reshape(-1)


def search_layer_scales(
    layer: LayerParts, linears: dict[str, nn.Linear], stats: dict, bits: int, group_size: int | None, grid: int = 20
) -> dict[tuple[str, ...], ScaleChoice]:
    """The best s of each group of :data:`SCALE_GROUPS`; ``stats[group]`` is its :class:`ActivationStats`.

    For o_proj, s has one entry per v channel (tied across the query heads that read it).
    """
    heads = _Heads(layer, linears)
    choices = {}
    for group in SCALE_GROUPS:
        group_stats = stats[group]
        tied = group == O and heads.tie > 1
        a = heads.reduce(group_stats.abs_mean) if tied else group_stats.abs_mean
        choices[group] = awq_scales(a.to(group_stats.hessian.device), [linears[n].weight for n in group],
                                    group_stats.hessian, bits, group_size, grid, heads.expand if tied else None)
    return choices


def fold_layer_scales(
    layer: LayerParts, linears: dict[str, nn.Linear], scales: dict[tuple[str, ...], torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Scale each group's input columns by s and fold 1/s into the operator before it (in place).

    Without rounding this leaves the layer's function unchanged. Returns (column scale of every linear,
    row scale of the two producers, v_proj and up_proj), which map the new weights back:
    W_original = diag(row) W_new diag(1/column).
    """
    heads = _Heads(layer, linears)
    producers = {QKV: layer.attn_norm, O: linears["self_attn.v_proj"], GATE_UP: layer.mlp_norm, DOWN: linears["mlp.up_proj"]}
    column_scale, row_scale = {}, {}
    for group in SCALE_GROUPS:
        s = scales[group].float()
        column = heads.expand(s) if group == O and heads.tie > 1 else s
        for name in group:
            weight = linears[name].weight
            weight.copy_((weight.float() * column.to(weight.device)).to(weight.dtype))
            column_scale[name] = column
        producer = producers[group]
        if isinstance(producer, nn.Linear):
            _divide(producer.weight, s.unsqueeze(1))
            row_scale["self_attn.v_proj" if group == O else "mlp.up_proj"] = s
        else:
            _divide(producer.weight, s)
        if getattr(producer, "bias", None) is not None:
            _divide(producer.bias, s)
    return column_scale, row_scale


def awq_layer(
    layer: LayerParts, linears: dict[str, nn.Linear], stats: dict, bits: int, group_size: int | None, grid: int = 20
) -> dict[str, AWQLinear]:
    """Search the four scale groups of ``layer``, fold the scales, round every linear; see the module docstring.

    ``stats`` maps each group of :data:`SCALE_GROUPS` to its :class:`ActivationStats` (on the layer as it
    came in). The linears and the two norms are rewritten in place.
    """
    check_bits(bits)
    check_grid(grid)
    for name, linear in linears.items():
        check_group_size(group_size, linear.in_features, f"layer {layer.index} {name}")
    choices = search_layer_scales(layer, linears, stats, bits, group_size, grid)
    column_scale, row_scale = fold_layer_scales(layer, linears, {group: c.scale for group, c in choices.items()})
    alphas = {name: choice.alpha for group, choice in choices.items() for name in group}
    result = {}
    for name, linear in linears.items():
        rounded, linear_grid = rtn_quantize(linear.weight, bits, group_size)
        linear.weight.copy_(rounded.to(linear.weight.dtype))
        result[name] = AWQLinear(grid=linear_grid, column_scale=column_scale[name], row_scale=row_scale.get(name),
                                 alpha=alphas[name])
    return result


def _divide(param: torch.Tensor, s: torch.Tensor) -> None:
    """param / s in fp32, stored back in param's dtype."""
    param.copy_((param.float() / s.to(param.device)).to(param.dtype))
