"""Layer similarity scores: how little each attention sublayer, MLP sublayer and block changes its input.

For every layer l, over all tokens of the calibration set (one pass of the model):

- attention (LLM-Drop, He et al., "What matters in transformers? Not all attention is needed"; TMLR 2026
  "Uncovering the redundancy in transformers via a unified study of layer dropping"):
  s = mean cos(X, X + Attn(LN(X))), X the residual entering the layer;
- MLP (same paper): s = mean cos(X, X + MLP(LN(X))), X the residual entering the MLP block
  (the input of ``post_attention_layernorm``);
- block (ShortGPT, Men et al. 2025, "ShortGPT: layers in large language models are more redundant than
  you expect"): s = mean cos(layer input, layer output); Block Influence = 1 - s.

importance = 1 - similarity. Cosines are computed in fp32 whatever the model dtype, summed in fp64.
With ``dropped`` the pass runs on the dropped model (for iterative selection); a dropped unit adds
nothing, so its similarity is cos(X, X) = 1 and the layers after it see the dropped model's residuals.

The numbers are read with hooks on the stock modules (transformers 5 layout): a pre-hook on each decoder
layer for X (``hidden_states`` is positional or keyword), a forward hook on ``self_attn`` (returns
``(out, weights)``), a pre-hook on ``post_attention_layernorm`` for the MLP's residual, a forward hook on
``mlp``, and a forward hook on the layer for its output (a Tensor).
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from prunescope.adapter import model_parts
from prunescope.dropping.hooks import active_drops, apply_drops
from prunescope.dropping.plan import DropPlan
from prunescope.variants import DROP_UNITS


def layer_scores(model: nn.Module, calibration_ids: torch.Tensor, device="cpu", batch_size: int = 1,
                 dropped: DropPlan | None = None) -> pd.DataFrame:
    """Similarity of each unit's output to its input; columns ``unit, layer, similarity, importance, n_tokens``.

    ``calibration_ids``: LongTensor [n, seqlen] of unpadded calibration blocks (every token counts).
    The model is moved to ``device``; the ``dropped`` plan is applied for the pass and removed after.
    """
    parts = model_parts(model)
    _check_calibration(calibration_ids, model, batch_size)
    if active_drops(model) is not None:
        raise RuntimeError("model already has drops applied; pass the plan as `dropped=` instead")
    device = torch.device(device)
    model.to(device)
    sums = {unit: torch.zeros(parts.n_layers, dtype=torch.float64, device=device) for unit in DROP_UNITS}
    handles = _register_score_hooks(parts, sums)
    drop_handle = apply_drops(model, dropped) if dropped is not None else None
    try:
        with torch.inference_mode():
            for start in range(0, calibration_ids.shape[0], batch_size):
                batch = calibration_ids[start:start + batch_size].to(device)
                # The backbone is enough: the LM head's [tokens x vocab] logits are never needed.
                parts.backbone(input_ids=batch, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        if drop_handle is not None:
            drop_handle.remove()
    n_tokens = calibration_ids.numel()
    rows = []
    for unit in DROP_UNITS:
        for layer, total in enumerate(sums[unit].tolist()):
            similarity = total / n_tokens
            rows.append((unit, layer, similarity, 1.0 - similarity, n_tokens))
    table = pd.DataFrame(rows, columns=["unit", "layer", "similarity", "importance", "n_tokens"])
    return table.astype({"layer": "int64", "similarity": "float64", "importance": "float64",
                         "n_tokens": "int64"})


def _check_calibration(ids: torch.Tensor, model: nn.Module, batch_size: int) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.long or ids.numel() == 0:
        got = f"{type(ids).__name__} {tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids)
        raise ValueError(f"calibration_ids must be a non-empty LongTensor [n, seqlen], got {got}")
    vocab = model.config.vocab_size
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise ValueError(f"calibration_ids hold token ids outside 0..{vocab - 1} (model vocab_size {vocab}): "
                         f"min {int(ids.min())}, max {int(ids.max())}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _cos_sum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over tokens of cos(x_t, y_t), cosines in fp32, the sum in fp64."""
    return F.cosine_similarity(x.float(), y.float(), dim=-1).sum(dtype=torch.float64)


def _register_score_hooks(parts, sums: dict[str, torch.Tensor]) -> list:
    handles = []
    for lp in parts.layers:
        # Per-layer capture slots, filled by the sublayer hooks and consumed by the layer's output hook.
        # A sublayer that never ran (its block is dropped) adds nothing: its slot stays None.
        slots: dict[str, torch.Tensor | None] = {}

        def layer_in(module, args, kwargs, slots=slots):
            slots.clear()
            slots["x"] = args[0] if args else kwargs["hidden_states"]

        def attn_out(module, args, kwargs, output, slots=slots):
            slots["attn"] = output[0] if isinstance(output, tuple) else output

        def mlp_residual(module, args, slots=slots):
            slots["mlp_x"] = args[0]

        def mlp_out(module, args, output, slots=slots):
            slots["mlp"] = output

        def layer_out(module, args, kwargs, output, index=lp.index, slots=slots):
            x = slots["x"]
            out = output[0] if isinstance(output, tuple) else output
            attn = slots.get("attn")
            mlp_x = slots.get("mlp_x", x)
            mlp = slots.get("mlp")
            sums["attn"][index] += _cos_sum(x, x.float() + attn.float() if attn is not None else x)
            sums["mlp"][index] += _cos_sum(mlp_x, mlp_x.float() + mlp.float() if mlp is not None else mlp_x)
            sums["block"][index] += _cos_sum(x, out)
            slots.clear()

        handles += [
            lp.layer.register_forward_pre_hook(layer_in, with_kwargs=True),
            lp.attn.register_forward_hook(attn_out, with_kwargs=True),
            lp.mlp_norm.register_forward_pre_hook(mlp_residual),
            lp.mlp.register_forward_hook(mlp_out),
            lp.layer.register_forward_hook(layer_out, with_kwargs=True),
        ]
    return handles
