"""Prune a whole model, decoder layer by decoder layer, as Wanda and SparseGPT do.

Targets are the linears of every decoder layer (q, k, v, o, gate, up, down; see
:meth:`prunescope.adapter.LayerParts.linears`); embeddings, norms and the output head are never touched.

Calibration-based methods (Wanda, SparseGPT) run sequentially so that the errors of earlier pruned layers
reach the statistics of later ones, as in both papers:

1. One pass of the calibration tokens through the model with every decoder layer replaced by a recorder
   captures the inputs of layer 0 and the exact keyword arguments the model passes to each layer
   (causal / sliding-window mask as the attention implementation wants it, rotary ``(cos, sin)``,
   position ids; no cache). Layers are later called with these, the way transformers 5 calls them.
2. For each layer: move it to the compute device; run it over the calibration inputs with hooks that
   accumulate fp32 statistics, once per distinct input (q/k/v read one input, gate/up another); prune
   its linears; run the pruned layer again: its outputs are the next layer's inputs; move it back.

Only one layer's weights and one layer's activations (its inputs and outputs, in the model's dtype) are
on the device at a time. Magnitude pruning needs no data and prunes each matrix directly.

The loop itself, :func:`calibrate_layer_by_layer`, knows nothing about pruning: it takes a statistics
type and a function that rewrites a layer's linears from them, so weight-only quantisation
(:mod:`prunescope.quantization`) runs through exactly the same capture and propagation.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

from ..adapter import LayerParts, ModelParts, model_parts
from ..device import resolve_device
from ..variants import PRUNING_METHODS, PruneSpec
from .magnitude import magnitude_mask
from .obs import HessianStats, inverse_hessian
from .sparsegpt import sparsegpt_prune
from .wanda import InputNormStats, wanda_mask

log = logging.getLogger(__name__)

# Linears that read the same tensor, so one set of statistics serves them all (first = where it is hooked).
SHARED_INPUTS = (
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    ("self_attn.o_proj",),
    ("mlp.gate_proj", "mlp.up_proj"),
    ("mlp.down_proj",),
)


def prune_model(
    model: nn.Module,
    spec: PruneSpec,
    calibration_ids: torch.Tensor | None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    sparsegpt_blocksize: int = 128,
    sparsegpt_percdamp: float = 0.01,
) -> list[dict[str, Any]]:
    """Prune ``model`` in place as ``spec`` says; return one row per pruned linear.

    ``calibration_ids`` is a ``[n_samples, seqlen]`` integer tensor (unused by magnitude pruning).
    Rows are ``{layer, module, n_params, n_zero, sparsity}``. Every input is checked before any work.
    """
    parts = model_parts(model)
    calibration_ids = _validate(spec, parts, calibration_ids, batch_size, sparsegpt_blocksize, sparsegpt_percdamp)
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    with torch.no_grad():
        if spec.method == "magnitude":
            for layer in parts.layers:
                for linear in layer.linears().values():
                    weight = linear.weight.to(device)
                    linear.weight.masked_fill_(magnitude_mask(weight, spec.sparsity, spec.n_of_m).to(linear.weight.device), 0)
        else:
            stats_type = InputNormStats if spec.method == "wanda" else HessianStats

            def prune_layer(layer: LayerParts, linears: dict[str, nn.Linear], stats: dict) -> None:
                _prune_linears(linears, stats, spec, sparsegpt_blocksize, sparsegpt_percdamp)
                log.info("pruned layer %d/%d with %s", layer.index + 1, parts.n_layers, spec.name)

            calibrate_layer_by_layer(parts, calibration_ids, batch_size, device, stats_type, prune_layer)
    return sparsity_rows(parts)


def calibrate_layer_by_layer(
    parts: ModelParts,
    calibration_ids: torch.Tensor,
    batch_size: int,
    device: torch.device,
    stats_type: Callable[[int, torch.device], Any],
    process_layer: Callable[[LayerParts, dict[str, nn.Linear], dict[tuple[str, ...], Any]], None],
) -> None:
    """Steps 1-2 of the module docstring for any method that rewrites a layer's linears from statistics.

    ``stats_type(d_in, device)`` makes one accumulator (with ``.add(inputs)``) per group of
    :data:`SHARED_INPUTS`; ``process_layer(layer, linears, stats)`` then rewrites the layer's linears in
    place (it may ``pop`` the statistics it is done with to free memory). The rewritten layer's outputs
    are the next layer's inputs.
    """
    inputs, layer_kwargs = _capture_layer_inputs(parts, calibration_ids, batch_size, device)
    for layer in parts.layers:
        last = layer.index == parts.n_layers - 1  # its outputs feed nothing: skip that pass
        inputs = _calibrate_layer(layer, inputs, layer_kwargs, device, stats_type, process_layer, last)


def sparsity_rows(parts: ModelParts) -> list[dict[str, Any]]:
    """Per-linear zero counts of every decoder layer."""
    rows = []
    for layer in parts.layers:
        for name, linear in layer.linears().items():
            n_params = linear.weight.numel()
            n_zero = int((linear.weight == 0).sum())
            rows.append(dict(layer=layer.index, module=name, n_params=n_params, n_zero=n_zero, sparsity=n_zero / n_params))
    return rows


def _validate(spec, parts, calibration_ids, batch_size, blocksize, percdamp) -> torch.Tensor | None:
    method = getattr(spec, "method", None)
    if method not in PRUNING_METHODS:
        raise ValueError(f"unknown pruning method {method!r} (variant {getattr(spec, 'name', spec)!r}); allowed: {', '.join(PRUNING_METHODS)}")
    if spec.n_of_m is not None and not 0 < spec.n_of_m[0] < spec.n_of_m[1]:
        raise ValueError(f"variant {spec.name!r}: N:M sparsity needs 0 < N < M, got N:M = {spec.n_of_m[0]}:{spec.n_of_m[1]}")
    if not 0.0 < spec.sparsity < 1.0:
        raise ValueError(f"variant {spec.name!r}: sparsity must be in (0, 1), got {spec.sparsity}")
    if spec.n_of_m is not None:
        n, m = spec.n_of_m
        if abs(spec.sparsity - n / m) > 1e-9:
            raise ValueError(f"variant {spec.name!r}: N:M sparsity {n}:{m} implies ratio {n / m}, got {spec.sparsity}")
        for layer in parts.layers:
            for name, linear in layer.linears().items():
                if linear.in_features % m:
                    raise ValueError(
                        f"variant {spec.name!r}: layer {layer.index} {name} has d_in={linear.in_features}, "
                        f"not divisible by M={m}; N:M sparsity needs whole groups of M inputs"
                    )
        if method == "sparsegpt" and (blocksize < 1 or blocksize % m):
            raise ValueError(f"sparsegpt_blocksize={blocksize} must be a positive multiple of M={m}")
    if method == "magnitude":
        return None
    if blocksize < 1 or percdamp <= 0:
        raise ValueError(f"sparsegpt_blocksize must be >= 1 and sparsegpt_percdamp > 0, got {blocksize}, {percdamp}")
    return check_calibration(parts, calibration_ids, batch_size, method)


def check_calibration(parts: ModelParts, calibration_ids, batch_size: int, method: str) -> torch.Tensor:
    """The batch size and ``[n_samples, seqlen]`` token ids of a calibrated method, checked; ids as int64."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not torch.is_tensor(calibration_ids) or calibration_ids.dim() != 2 or calibration_ids.dtype.is_floating_point:
        raise ValueError(
            f"{method} needs calibration_ids as an integer tensor [n_samples, seqlen], got "
            f"{type(calibration_ids).__name__}{tuple(calibration_ids.shape) if torch.is_tensor(calibration_ids) else ''}"
        )
    vocab = parts.embed.num_embeddings
    if calibration_ids.numel() == 0 or int(calibration_ids.min()) < 0 or int(calibration_ids.max()) >= vocab:
        raise ValueError(f"calibration_ids must be non-empty token ids in [0, {vocab}) for this model")
    return calibration_ids.long()


class _LayerRecorder(nn.Module):
    """Stands in for decoder layer ``index`` during the capture pass: records its call, returns its input."""

    def __init__(self, index: int, sink: dict):
        super().__init__()
        self.index, self.sink = index, sink

    def forward(self, hidden_states, *args, **kwargs):
        if args:
            raise TypeError("decoder layers are expected to get everything but hidden_states as keywords")
        self.sink[self.index] = (hidden_states, kwargs)
        return hidden_states


def _capture_layer_inputs(parts: ModelParts, ids: torch.Tensor, batch_size: int, device: torch.device):
    """Layer-0 inputs per batch (on ``device``) and, per batch shape, the keyword arguments of every layer."""
    layers = parts.backbone.layers
    originals = list(layers)
    sink: dict[int, tuple] = {}
    inputs, kwargs_by_shape = [], {}
    embed_device = parts.embed.weight.device
    try:
        for index in range(len(originals)):
            layers[index] = _LayerRecorder(index, sink)
        for batch in ids.split(batch_size):
            sink.clear()
            parts.backbone(input_ids=batch.to(embed_device), use_cache=False)
            inputs.append(sink[0][0].to(device))
            if batch.shape not in kwargs_by_shape:
                kwargs_by_shape[batch.shape] = [_to_device(sink[i][1], device) for i in range(len(originals))]
    finally:
        for index, layer in enumerate(originals):
            layers[index] = layer
    return inputs, kwargs_by_shape


def _to_device(value, device):
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _run_layer(layer: LayerParts, inputs: list[torch.Tensor], layer_kwargs: dict) -> list[torch.Tensor]:
    outputs = []
    for hidden in inputs:
        out = layer.layer(hidden, **layer_kwargs[hidden.shape[:2]][layer.index])
        outputs.append(out[0] if isinstance(out, tuple) else out)
    return outputs


def _calibrate_layer(layer, inputs, layer_kwargs, device, stats_type, process_layer, last) -> list[torch.Tensor]:
    """Statistics pass, ``process_layer``, then (unless ``last``) the pass that makes the next layer's inputs."""
    home = next(layer.layer.parameters()).device
    layer.layer.to(device)
    linears = layer.linears()
    stats = {group: stats_type(linears[group[0]].in_features, device) for group in SHARED_INPUTS}
    hooks = [
        linears[group[0]].register_forward_pre_hook(
            lambda _module, args, kwargs, s=stats[group]: s.add(args[0] if args else kwargs["input"]), with_kwargs=True
        )
        for group in SHARED_INPUTS
    ]
    try:
        _run_layer(layer, inputs, layer_kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    process_layer(layer, linears, stats)
    outputs = [] if last else _run_layer(layer, inputs, layer_kwargs)
    layer.layer.to(home)
    return outputs


def _prune_linears(linears, stats, spec, blocksize, percdamp) -> None:
    """Wanda masks or SparseGPT updates for every linear of one layer, one input group at a time."""
    for group in SHARED_INPUTS:
        group_stats = stats.pop(group)
        if spec.method == "wanda":
            for name in group:
                weight = linears[name].weight
                weight.masked_fill_(wanda_mask(weight, group_stats.norms, spec.sparsity, spec.n_of_m), 0)
        else:
            inverse = inverse_hessian(group_stats.hessian, percdamp)
            for name in group:
                weight = linears[name].weight
                pruned, _ = sparsegpt_prune(weight, inverse, spec.sparsity, spec.n_of_m, blocksize)
                weight.copy_(pruned)
