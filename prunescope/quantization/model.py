"""Quantise a whole model's decoder linears, layer by layer: the entry point of the quantize stage.

Targets are the linears pruning targets (q, k, v, o, gate, up, down of every decoder layer); embeddings
and the output head stay as they are. With calibration data, every method runs through the sequential
procedure of :func:`prunescope.pruning.calibrate_layer_by_layer`: each layer's statistics are gathered on
the outputs of the already-quantised layers before it (as GPTQ does), the layer is quantised, and the
quantised layer makes the next layer's inputs. RTN needs no data; without calibration it skips the
passes and reports no output error.

The result is de-quantised weights held in the model's own parameters (and dtype), so the model saves as
a stock Hugging Face checkpoint, plus one row per linear:

- ``weight_error`` = ||W - W'|| / ||W||, with W the linear as it came in and W' its quantised function in
  the same coordinates (AWQ: diag(row scale) W_stored diag(1/s), undoing the folded scales);
- ``output_error`` = ||(W - W') X|| / ||W X|| over the linear's calibration inputs X (on the layer's
  propagated inputs), computed as sqrt(tr(dW H dW^T) / tr(W H W^T)) from H = 2/n X X^T;
- ``awq_alpha``: the AWQ exponent chosen for the linear's input group (None for RTN and GPTQ).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..adapter import LayerParts, model_parts
from ..device import resolve_device
from ..pruning import SHARED_INPUTS, HessianStats, calibrate_layer_by_layer, check_calibration
from ..variants import QUANT_METHODS, QuantSpec
from .awq import ActivationStats, awq_layer, check_grid, head_dim_of, output_error, v_to_o_tie
from .grid import ALLOWED_BITS, Grid
from .gptq import gptq_hessian, gptq_quantize
from .rtn import rtn_quantize

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = {"gptq_blocksize": 128, "gptq_percdamp": 0.01, "gptq_act_order": False, "awq_grid": 20}


@dataclass
class QuantizationResult:
    """Per-linear rows (see the module docstring) and each linear's grid, keyed by its module name."""

    rows: list[dict[str, Any]]
    grids: dict[str, Grid]


def quantize_model(
    model: nn.Module,
    spec: QuantSpec,
    calibration_ids: torch.Tensor | None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    gptq_blocksize: int = 128,
    gptq_percdamp: float = 0.01,
    gptq_act_order: bool = False,
    awq_grid: int = 20,
) -> QuantizationResult:
    """Quantise ``model`` in place as ``spec`` says. Every input is checked before any work."""
    parts = model_parts(model)
    calibration_ids = _validate(spec, parts, calibration_ids, batch_size, gptq_blocksize, gptq_percdamp,
                                gptq_act_order, awq_grid)
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    names = {id(module): name for name, module in model.named_modules()}
    rows, grids = [], {}

    def record(layer: LayerParts, name: str, dense: torch.Tensor, effective: torch.Tensor, grid: Grid,
               hessian: torch.Tensor | None, alpha: float | None) -> None:
        linear = layer.linears()[name]
        grids[names[id(linear)]] = Grid(grid.scale.cpu(), grid.zero.cpu(), grid.bits, grid.group_size)
        out_error = None
        if hessian is not None:
            reference = float(output_error(dense, torch.zeros_like(dense), hessian))
            out_error = math.sqrt(float(output_error(dense, effective, hessian)) / reference) if reference > 0 else 0.0
        rows.append(dict(
            layer=layer.index, module=name, method=spec.method, bits=spec.bits, group_size=spec.group_size,
            n_params=dense.numel(), weight_error=float((dense - effective).norm() / dense.norm().clamp(min=1e-30)),
            output_error=out_error, awq_alpha=alpha,
        ))

    def quantize_layer(layer: LayerParts, linears: dict[str, nn.Linear], stats: dict | None) -> None:
        dense = {name: linear.weight.detach().float().clone() for name, linear in linears.items()}
        if spec.method == "awq":
            chosen = awq_layer(layer, linears, stats, spec.bits, spec.group_size, awq_grid)
            for group in SHARED_INPUTS:
                hessian = stats.pop(group).hessian
                for name in group:
                    choice = chosen[name]
                    effective = linears[name].weight.float() / choice.column_scale.to(hessian.device)
                    if choice.row_scale is not None:
                        effective = effective * choice.row_scale.to(hessian.device).unsqueeze(1)
                    record(layer, name, dense[name], effective, choice.grid, hessian, choice.alpha)
        else:
            for group in SHARED_INPUTS:
                hessian = None if stats is None else stats.pop(group).hessian
                prepared = gptq_hessian(hessian, gptq_percdamp, gptq_act_order) if spec.method == "gptq" else None
                for name in group:
                    weight = linears[name].weight
                    if prepared is None:
                        rounded, grid = rtn_quantize(weight.to(device), spec.bits, spec.group_size)
                    else:
                        rounded, grid = gptq_quantize(weight, prepared, spec.bits, spec.group_size, gptq_blocksize)
                    weight.copy_(rounded.to(weight.device, weight.dtype))
                    record(layer, name, dense[name].to(rounded.device), weight.float().to(rounded.device), grid,
                           hessian, None)
        log.info("quantised layer %d/%d with %s", layer.index + 1, parts.n_layers, spec.name)

    with torch.no_grad():
        if calibration_ids is None:  # RTN without data
            for layer in parts.layers:
                quantize_layer(layer, layer.linears(), None)
        else:
            stats_type = ActivationStats if spec.method == "awq" else HessianStats
            calibrate_layer_by_layer(parts, calibration_ids, batch_size, device, stats_type, quantize_layer)
    return QuantizationResult(rows=rows, grids=grids)


def _validate(spec, parts, calibration_ids, batch_size, blocksize, percdamp, act_order, awq_grid):
    method = getattr(spec, "method", None)
    name = getattr(spec, "name", spec)
    if getattr(spec, "kind", None) != "quant" or method not in QUANT_METHODS:
        raise ValueError(f"variant {name!r} is not a quantisation variant; allowed methods: {', '.join(QUANT_METHODS)}")
    if spec.bits not in ALLOWED_BITS:
        raise ValueError(f"variant {name!r}: bits must be in {ALLOWED_BITS.start}..{ALLOWED_BITS.stop - 1}, got {spec.bits}")
    group = spec.group_size
    widths = {(layer.index, module): linear.in_features for layer in parts.layers for module, linear in layer.linears().items()}
    if group is not None:
        common = math.gcd(*widths.values())
        allowed = ", ".join(str(d) for d in range(1, common + 1) if common % d == 0)
        for (index, module), d_in in widths.items():
            if group < 1 or d_in % group:
                raise ValueError(
                    f"variant {name!r}: layer {index} {module} has d_in={d_in}, not divisible by group size {group}; "
                    f"allowed group sizes for this model: {allowed} (divisors of every d_in), or none for per "
                    f"output channel ('quant-{method}-w{spec.bits}')"
                )
    if method == "gptq":
        if not isinstance(blocksize, int) or blocksize < 1:
            raise ValueError(f"gptq_blocksize must be an integer >= 1, got {blocksize!r}")
        if not percdamp > 0:
            raise ValueError(f"gptq_percdamp must be > 0, got {percdamp!r}")
        if not isinstance(act_order, bool):
            raise ValueError(f"gptq_act_order must be true or false, got {act_order!r}")
    if method == "awq":
        check_grid(awq_grid)
        for layer in parts.layers:  # o_proj's scales fold into v_proj per head: the layout must allow it
            v_to_o_tie(layer)
            head_dim_of(layer)
    if method == "rtn" and calibration_ids is None:
        return None
    return check_calibration(parts, calibration_ids, batch_size, method)
