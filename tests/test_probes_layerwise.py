"""Layer-wise shared-context probe: drop and pruned modes against stock hidden states and hand-built models."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_model

from prunescope.probes.decoding import DecodingSettings, decode, prompt_seed
from prunescope.probes.layerwise import layerwise_probe

PROMPT = [5, 17, 33, 9, 71, 4, 60]
SETTINGS = DecodingSettings(temperature=1.0, max_new_tokens=6, seed=4, eos_token_ids=())


def by_key(records):
    return {(r["step"], r["layer"], r["sublayer"]): r for r in records}


def stock_steps(model):
    """generate() with per-step hidden states, the same seed (prompt "p"'s stream) and settings as the probe."""
    torch.manual_seed(prompt_seed(SETTINGS.seed, "p"))
    return model.generate(
        torch.tensor([PROMPT]), do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=None,
        max_new_tokens=SETTINGS.max_new_tokens, output_hidden_states=True, return_dict_in_generate=True,
    )


def test_drop_mode_matches_stock_hidden_states(family):
    model = tiny_model(family)
    n_layers = model.config.num_hidden_layers
    # Independent captures: the last layer's raw output and each attention's output, per forward.
    last_out, attn_out = [], {i: [] for i in range(n_layers)}
    handles = [model.model.layers[-1].register_forward_hook(lambda m, a, o: last_out.append(o[0, -1].clone()))]
    for i, layer in enumerate(model.model.layers):
        grab = lambda m, a, o, i=i: attn_out[i].append(o[0][0, -1].clone())  # noqa: E731
        handles.append(layer.self_attn.register_forward_hook(grab))
    out = stock_steps(model)
    for h in handles:
        h.remove()

    records = by_key(layerwise_probe(model, {"p": PROMPT}, SETTINGS))
    new_tokens = out.sequences[0, len(PROMPT):].tolist()
    assert len(records) == SETTINGS.max_new_tokens * n_layers * 2
    for step, states in enumerate(out.hidden_states):  # states[i] = input of layer i; states[-1] post-norm
        for i in range(n_layers):
            attn, mlp = records[(step, i, "attn")], records[(step, i, "mlp")]
            assert attn["mode"] == "drop" and attn["token_ref"] == new_tokens[step] and attn["token_var"] == -1
            x = states[i][0, -1]
            assert torch.equal(attn["h_var"], x)  # dropping the sublayer leaves the residual entering it
            assert torch.equal(attn["h_ref"], x + attn_out[i][step])
            assert torch.equal(mlp["h_var"], attn["h_ref"])
            after = states[i + 1][0, -1] if i + 1 < n_layers else last_out[step]
            assert torch.equal(mlp["h_ref"], after)
        # The last mlp's h_ref is the pre-final-norm stream: the final norm of it is stock hidden_states[-1].
        pre_norm = records[(step, n_layers - 1, "mlp")]["h_ref"]
        torch.testing.assert_close(model.model.norm(pre_norm), states[-1][0, -1], rtol=1e-6, atol=1e-6)


def test_pruned_mode_with_identical_variant_is_exact(family):
    model = tiny_model(family)
    records = layerwise_probe(model, {"p": PROMPT, "q": PROMPT[:3]}, SETTINGS, variant=copy.deepcopy(model))
    assert {r["mode"] for r in records} == {"pruned"}
    assert {r["prompt_id"] for r in records} == {"p", "q"}
    assert all(torch.equal(r["h_ref"], r["h_var"]) for r in records)
    # The dense decoding is not disturbed by the hooks: same tokens as stock generate.
    tokens = [r["token_ref"] for r in records if r["prompt_id"] == "p" and r["layer"] == 0 and r["sublayer"] == "attn"]
    assert tokens == stock_steps(model).sequences[0, len(PROMPT):].tolist()


def test_pruned_mode_uses_the_variant_sublayer_on_the_dense_input():
    model = tiny_model("llama")
    variant = copy.deepcopy(model)
    with torch.no_grad():
        variant.model.layers[1].mlp.down_proj.weight.zero_()  # this MLP now outputs exactly zero
        variant.model.layers[2].self_attn.o_proj.weight.zero_()  # and this attention too
    records = layerwise_probe(model, {"p": PROMPT}, SETTINGS, variant=variant)
    dropped = by_key(layerwise_probe(model, {"p": PROMPT}, SETTINGS))
    for key, r in by_key(records).items():
        if key[1:] in ((1, "mlp"), (2, "attn")):
            assert torch.equal(r["h_var"], dropped[key]["h_var"])  # X + 0 == X
            assert not torch.equal(r["h_var"], r["h_ref"])
        else:
            assert torch.equal(r["h_var"], r["h_ref"])
        assert torch.equal(r["h_ref"], dropped[key]["h_ref"])


def hybrid_residual(dense, variant, layer, sublayer, sequence):
    """Independent reference: dense model with one sublayer (and its norm) swapped for the variant's, run
    uncached over the whole sequence; returns the residual after that sublayer at every position."""
    hybrid = copy.deepcopy(dense)
    block, source = hybrid.model.layers[layer], variant.model.layers[layer]
    if sublayer == "attn":
        block.self_attn = copy.deepcopy(source.self_attn)
        block.input_layernorm = copy.deepcopy(source.input_layernorm)
        target, grab = block.post_attention_layernorm, "pre"
    else:
        block.mlp = copy.deepcopy(source.mlp)
        block.post_attention_layernorm = copy.deepcopy(source.post_attention_layernorm)
        target, grab = block, "post"
    seen = []
    if grab == "pre":
        handle = target.register_forward_pre_hook(lambda m, a: seen.append(a[0][0]))
    else:
        handle = target.register_forward_hook(lambda m, a, o: seen.append(o[0]))
    with torch.no_grad():
        hybrid(torch.tensor([sequence]))
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("sublayer", ["attn", "mlp"])
def test_pruned_attention_sees_the_whole_context(family, sublayer):
    dense, variant = tiny_model(family, seed=0), tiny_model(family, seed=1)  # different weights, same shape
    records = by_key(layerwise_probe(dense, {"p": PROMPT}, SETTINGS, variant=variant))
    tokens = [records[(s, 0, "attn")]["token_ref"] for s in range(SETTINGS.max_new_tokens)]
    layer = 1
    expected = hybrid_residual(dense, variant, layer, sublayer, PROMPT + tokens[:-1])
    for step in range(SETTINGS.max_new_tokens):
        got = records[(step, layer, sublayer)]["h_var"]
        torch.testing.assert_close(got, expected[len(PROMPT) - 1 + step], rtol=1e-5, atol=1e-5)


def test_context_test_fails_for_an_uncached_variant_attention():
    """The official code calls the pruned attention without a cache; with pruned == dense weights that
    differs from h_ref after the prefill, so the exactness check above would catch the bug."""
    dense = tiny_model("llama")
    variant = copy.deepcopy(dense)
    layer = 1
    buggy = []

    def uncached(module, args, kwargs, output):
        call = {**kwargs, "cache": None}
        if kwargs["hidden_states"].shape[1] == 1:  # no cache: the one-token step's mask would not fit
            call["attention_mask"] = None
        out = variant.model.layers[layer].self_attn(**call)[0]
        buggy.append(out[0, -1])

    residual_in = []
    block = dense.model.layers[layer]
    h1 = block.input_layernorm.register_forward_pre_hook(lambda m, a: residual_in.append(a[0][0, -1]))
    h2 = block.self_attn.register_forward_hook(uncached, with_kwargs=True)
    decode(dense, {"p": PROMPT}, SETTINGS)
    h1.remove()
    h2.remove()
    records = by_key(layerwise_probe(dense, {"p": PROMPT}, SETTINGS, variant=variant))
    for step in range(SETTINGS.max_new_tokens):
        h_ref = records[(step, layer, "attn")]["h_ref"]
        assert torch.equal(records[(step, layer, "attn")]["h_var"], h_ref)
        bug_value = residual_in[step] + buggy[step]
        if step == 0:
            assert torch.equal(bug_value, h_ref)  # the prefill has the whole prompt in view either way
        else:
            assert (bug_value - h_ref).abs().max() > 1e-3


def test_variant_of_another_shape_is_rejected():
    with pytest.raises(ValueError, match="num_hidden_layers: dense 3 vs variant 2"):
        layerwise_probe(tiny_model("llama"), {"p": PROMPT}, SETTINGS, variant=tiny_model("llama", num_hidden_layers=2))
