"""Apply a drop plan to a stock Hugging Face model at run time, without custom modeling files.

Inter-layer dropping removes attention or MLP sublayers (LLM-Drop: He et al., "What matters in
transformers? Not all attention is needed", TMLR 2026 as "Uncovering the redundancy in transformers via
a unified study of layer dropping") or whole decoder blocks (ShortGPT: Men et al., "ShortGPT: layers in
large language models are more redundant than you expect", 2025). In the pre-norm layout

    Y = X + self_attn(input_layernorm(X)),   layer(X) = Y + mlp(post_attention_layernorm(Y))

a dropped sublayer (with its pre-norm) must add nothing, so the residual passes through unchanged; a
dropped block returns its input.

How: the dropped module's ``forward`` is replaced *on the instance* (``module.forward = ...``), which
``nn.Module.__call__`` picks over the class method. A forward pre-hook cannot skip the computation (it can
only rewrite the inputs) and a forward hook runs after it, so an instance override is the way to skip
the work while every hook other code registers on these modules still fires. ``handle.remove()`` deletes
the override and the class forward is back. State dict, module tree and config are never touched, so a
model with drops applied still saves, generates and runs under lm-eval's ``HFLM(pretrained=model)``.

KV cache: a dropped attention (or block) computes nothing, but it still writes *zero* keys and values of
the right shape into the cache at its ``layer_idx``. The outputs never read them; they exist so that
every cache layer reports the same sequence length, because transformers derives positions and mask
sizes from the cache (``cache.get_seq_length()`` reads layer 0, ``get_mask_sizes`` the layer of each
attention type). Skipping the write would make a dropped layer 0 restart positions at every step.
"""

from __future__ import annotations

import torch
from torch import nn

from prunescope.adapter import model_parts
from prunescope.dropping.plan import DropPlan
from prunescope.variants import DROP_UNITS

# Set on the model while a plan is applied; lets other code refuse to stack plans or copy a hooked model
# (through active_drops).
_ACTIVE_ATTR = "_prunescope_drop_handle"


class DropHandle:
    """The applied plan; ``remove()`` (or leaving a ``with`` block) restores the stock forwards."""

    def __init__(self, model: nn.Module, plan: DropPlan, modules: list[nn.Module]):
        self.model = model
        self.plan = plan
        self._modules = modules

    def remove(self) -> None:
        for module in self._modules:
            module.__dict__.pop("forward", None)
        self._modules = []
        if getattr(self.model, _ACTIVE_ATTR, None) is self:
            delattr(self.model, _ACTIVE_ATTR)

    def __enter__(self) -> "DropHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def active_drops(model: nn.Module) -> DropPlan | None:
    """The plan currently applied to ``model`` by :func:`apply_drops`, or None."""
    handle = getattr(model, _ACTIVE_ATTR, None)
    return handle.plan if handle is not None else None


def apply_drops(model: nn.Module, plan: DropPlan) -> DropHandle:
    """Make the sublayers and blocks named in ``plan`` contribute nothing; return a removable handle.

    An empty plan changes nothing (the handle still marks the model). A layer both block-dropped and
    sublayer-dropped is simply a dropped block.
    """
    if getattr(model, _ACTIVE_ATTR, None) is not None:
        raise RuntimeError(
            f"model already has drops applied ({getattr(model, _ACTIVE_ATTR).plan}); call .remove() on that "
            "handle before applying another plan"
        )
    parts = model_parts(model)
    for unit in DROP_UNITS:
        bad = sorted(i for i in getattr(plan, unit) if not (isinstance(i, int) and 0 <= i < parts.n_layers))
        if bad:
            raise ValueError(
                f"drop plan unit {unit!r}: layer indices {bad} are outside 0..{parts.n_layers - 1} "
                f"(the model has {parts.n_layers} layers)"
            )
    overridden: list[nn.Module] = []
    for layer in parts.layers:
        if layer.index in plan.block:
            layer.layer.forward = _passthrough_block(layer.attn)
            overridden.append(layer.layer)
            continue
        if layer.index in plan.attn:
            layer.attn.forward = _zero_attention(layer.attn)
            overridden.append(layer.attn)
        if layer.index in plan.mlp:
            layer.mlp.forward = _zero_mlp
            overridden.append(layer.mlp)
    handle = DropHandle(model, plan, overridden)
    setattr(model, _ACTIVE_ATTR, handle)
    return handle


def _write_placeholder_kv(attn: nn.Module, hidden_states: torch.Tensor, kwargs: dict) -> None:
    """Append zero keys/values for this attention's layer so all cache layers stay the same length."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None:
        return
    batch, seq_len = hidden_states.shape[:2]
    n_kv_heads = attn.k_proj.out_features // attn.head_dim
    zeros = hidden_states.new_zeros(batch, n_kv_heads, seq_len, attn.head_dim)
    cache.update(zeros, zeros, attn.layer_idx, kwargs=kwargs)


def _zero_attention(attn: nn.Module):
    def forward(hidden_states: torch.Tensor, *args, **kwargs):
        _write_placeholder_kv(attn, hidden_states, kwargs)
        # Same shape as o_proj's output (= hidden size); no attention weights were computed.
        return torch.zeros_like(hidden_states), None

    return forward


def _zero_mlp(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return torch.zeros_like(hidden_states)


def _passthrough_block(attn: nn.Module):
    def forward(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        _write_placeholder_kv(attn, hidden_states, kwargs)
        return hidden_states

    return forward
