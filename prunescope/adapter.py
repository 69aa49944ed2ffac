"""Model adapter: find the parts of a Hugging Face causal LM that every stage works on.

All stages see a model through :func:`model_parts`: its decoder layers, each layer's attention and MLP
sublayers with their pre-norms, the final norm, the output head and the rotary embedding. The usual
pre-norm layout (Llama, Mistral, Qwen2, Qwen3 and their relatives) is

    layer(X) = Y + MLP(post_attention_layernorm(Y)),  Y = X + self_attn(input_layernorm(X))

Layouts with extra norms around the sublayers (Gemma 2/3, OLMo 2) compute something else, so they are
rejected with an error that says what was expected instead of being analysed wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
# Norms that change the residual algebra above; their presence means an unsupported layout.
_FOREIGN_NORMS = ("pre_feedforward_layernorm", "post_feedforward_layernorm", "post_self_attn_layernorm")
# The linears that intra-layer pruning targets, by sublayer; attention q/k/v and MLP gate/up read the
# same input, which is why pruning shares their calibration statistics.
ATTN_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")


class UnsupportedModelError(ValueError):
    """The model does not have the decoder layout prunescope analyses."""


@dataclass(frozen=True)
class LayerParts:
    index: int
    layer: nn.Module
    attn: nn.Module
    mlp: nn.Module
    attn_norm: nn.Module
    mlp_norm: nn.Module

    def linears(self) -> dict[str, nn.Linear]:
        """Every pruning target of this layer, keyed ``self_attn.q_proj`` ... ``mlp.down_proj``."""
        found = {}
        for prefix, parent, names in (("self_attn", self.attn, ATTN_LINEARS), ("mlp", self.mlp, MLP_LINEARS)):
            for name in names:
                module = getattr(parent, name, None)
                if not isinstance(module, nn.Linear):
                    raise UnsupportedModelError(
                        f"layer {self.index}: expected nn.Linear '{prefix}.{name}', found {type(module).__name__}"
                    )
                found[f"{prefix}.{name}"] = module
        return found


@dataclass(frozen=True)
class ModelParts:
    model: nn.Module
    backbone: nn.Module
    embed: nn.Module
    layers: list[LayerParts]
    final_norm: nn.Module
    head: nn.Linear
    rotary: nn.Module | None

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def model_parts(model: nn.Module) -> ModelParts:
    """Return the :class:`ModelParts` of ``model`` or raise :class:`UnsupportedModelError`."""
    family = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    backbone = getattr(model, "model", None)
    head = getattr(model, "lm_head", None)
    layers = getattr(backbone, "layers", None)
    missing = [
        name
        for name, value in (("model.model", backbone), ("model.lm_head", head), ("model.model.layers", layers))
        if value is None
    ]
    if missing or not isinstance(head, nn.Linear):
        raise UnsupportedModelError(
            f"model type {family!r}: cannot find {', '.join(missing) or 'an nn.Linear lm_head'}; prunescope needs "
            f"a causal LM laid out as model.model.layers[i].{{self_attn,mlp,input_layernorm,"
            f"post_attention_layernorm}}, model.model.norm and model.lm_head (families: {', '.join(SUPPORTED_FAMILIES)})"
        )
    parts = [_layer_parts(i, layer, family) for i, layer in enumerate(layers)]
    final_norm = getattr(backbone, "norm", None)
    if final_norm is None:
        raise UnsupportedModelError(f"model type {family!r}: no final norm at model.model.norm")
    return ModelParts(
        model=model,
        backbone=backbone,
        embed=backbone.embed_tokens,
        layers=parts,
        final_norm=final_norm,
        head=head,
        rotary=getattr(backbone, "rotary_emb", None),
    )


def _layer_parts(index: int, layer: nn.Module, family: str) -> LayerParts:
    wanted = ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm")
    missing = [name for name in wanted if not hasattr(layer, name)]
    foreign = [name for name in _FOREIGN_NORMS if hasattr(layer, name)]
    if missing or foreign:
        problem = f"missing {missing}" if missing else f"extra norms {foreign} change the residual layout"
        raise UnsupportedModelError(
            f"model type {family!r}, layer {index}: {problem}; expected exactly "
            f"{', '.join(wanted)} (families: {', '.join(SUPPORTED_FAMILIES)})"
        )
    return LayerParts(
        index=index,
        layer=layer,
        attn=layer.self_attn,
        mlp=layer.mlp,
        attn_norm=layer.input_layernorm,
        mlp_norm=layer.post_attention_layernorm,
    )
