"""Turn a block drop (ShortGPT, Men et al. 2025) into a smaller stock checkpoint.

Removing whole decoder layers needs no custom code: the remaining layers are renumbered, the config
says how many there are, and the result saves with ``save_pretrained`` and reloads with
``AutoModelForCausalLM``. Sublayer drops cannot be materialised this way (a stock layer always has both
sublayers), so they stay hook-based (:mod:`prunescope.dropping.hooks`).
"""

from __future__ import annotations

import copy

from torch import nn

from prunescope.adapter import model_parts
from prunescope.dropping.hooks import active_drops


def materialize_block_drops(model: nn.Module, layers, copy_model: bool = True) -> nn.Module:
    """A model without the decoder layers in ``layers``; logits equal the hook-based block drop.

    Updated: ``config.num_hidden_layers``, ``config.layer_types`` (if present; it is per layer), and the
    ``layer_idx`` of every remaining attention (and layer, where it has one), which is the index its keys
    and values take in the KV cache. With ``copy_model`` (default) the input model is left as it was;
    pass False to save memory on a large model you will not use again.
    """
    if active_drops(model) is not None:
        raise RuntimeError("model has drops applied by apply_drops(); remove them before materialising")
    parts = model_parts(model)
    drop = {int(i) for i in layers}
    bad = sorted(i for i in drop if not 0 <= i < parts.n_layers)
    if bad:
        raise ValueError(f"block indices {bad} are outside 0..{parts.n_layers - 1} "
                         f"(the model has {parts.n_layers} layers)")
    if len(drop) == parts.n_layers:
        raise ValueError(f"dropping all {parts.n_layers} blocks leaves no model")

    new = copy.deepcopy(model) if copy_model else model
    new_parts = model_parts(new)
    keep = [i for i in range(new_parts.n_layers) if i not in drop]
    new_parts.backbone.layers = nn.ModuleList(new_parts.layers[i].layer for i in keep)
    for new_index, layer in enumerate(new_parts.backbone.layers):
        layer.self_attn.layer_idx = new_index
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = new_index

    config = new.config
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in keep]
    # Qwen2-style configs derive layer_types from max_window_layers when reloaded without layer_types;
    # with layer_types written explicitly (above) the saved config is self-consistent.
    return new
