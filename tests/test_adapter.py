"""The model adapter finds the same parts on every supported family, and refuses other layouts."""

import pytest
import torch
from torch import nn

from prunescope.adapter import UnsupportedModelError, model_parts
from tests.conftest import tiny_model


def test_parts_of_each_family(family):
    model = tiny_model(family)
    parts = model_parts(model)
    assert parts.n_layers == model.config.num_hidden_layers
    assert parts.head is model.lm_head
    assert parts.final_norm is model.model.norm
    assert parts.embed is model.model.embed_tokens
    for i, layer in enumerate(parts.layers):
        assert layer.index == i
        assert layer.attn is model.model.layers[i].self_attn
        assert layer.mlp_norm is model.model.layers[i].post_attention_layernorm
        linears = layer.linears()
        assert sorted(linears) == sorted(
            [f"self_attn.{n}" for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
            + [f"mlp.{n}" for n in ("gate_proj", "up_proj", "down_proj")]
        )
        assert all(isinstance(m, nn.Linear) for m in linears.values())


def test_parts_reproduce_the_layer_algebra(family):
    """layer(X) = Y + MLP(mlp_norm(Y)), Y = X + attn(attn_norm(X)): the layout the adapter promises."""
    model = tiny_model(family)
    parts = model_parts(model)
    ids = torch.randint(0, 128, (1, 7))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        x = out.hidden_states[1]  # input of layer 1
        position_ids = torch.arange(7)[None]
        cos_sin = parts.rotary(x, position_ids)
        layer = parts.layers[1]
        mask = torch.full((7, 7), float("-inf")).triu(1)[None, None]
        attn_out = layer.attn(hidden_states=layer.attn_norm(x), position_embeddings=cos_sin, attention_mask=mask)[0]
        y = x + attn_out
        by_hand = y + layer.mlp(layer.mlp_norm(y))
    torch.testing.assert_close(by_hand, out.hidden_states[2], rtol=1e-5, atol=1e-5)


def test_unsupported_layouts_are_named():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0))
    with pytest.raises(UnsupportedModelError, match="'gpt2'.*model.model"):
        model_parts(gpt2)

    model = tiny_model("llama")
    model.model.layers[0].pre_feedforward_layernorm = nn.LayerNorm(64)  # a Gemma-2 style extra norm
    with pytest.raises(UnsupportedModelError, match="layer 0: extra norms"):
        model_parts(model)
