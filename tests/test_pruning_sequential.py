"""The layer-by-layer procedure: brute-force Wanda reference, propagation, targets, saving, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunescope.adapter import UnsupportedModelError, model_parts
from prunescope.pruning import prune_model
from prunescope.variants import PruneSpec, parse_variant
from tests.conftest import tiny_model

BATCH = 3


def calibration(n=7, seqlen=20, seed=0):
    return torch.randint(0, 128, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def reference_wanda(model, ids, sparsity, n_of_m):
    """Independent Wanda: for each layer in turn, run the *whole model* (earlier layers already pruned by
    this reference), record every linear's own raw inputs, rank |W_ij| * ||X_j|| row by row with Python
    sorting (ties to the lower column), then zero the chosen weights. Returns the masks."""
    masks = {}
    for layer in model.model.layers:
        linears = {f"{sub}.{name}": getattr(getattr(layer, sub), name) for sub, names in
                   (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")), ("mlp", ("gate_proj", "up_proj", "down_proj")))
                   for name in names}
        seen = {name: [] for name in linears}
        hooks = [lin.register_forward_hook(lambda _m, args, _out, n=name: seen[n].append(args[0].detach().clone()))
                 for name, lin in linears.items()]
        with torch.no_grad():
            for batch in ids.split(BATCH):
                model(batch)
        for hook in hooks:
            hook.remove()
        layer_masks = {}
        for name, lin in linears.items():
            x = torch.cat([s.reshape(-1, s.shape[-1]) for s in seen[name]]).double()
            norms = [float(v) for v in (x * x).sum(dim=0).sqrt()]
            weight = lin.weight.detach().double().abs().tolist()
            mask = torch.zeros(lin.weight.shape, dtype=torch.bool)
            for r, row in enumerate(weight):
                score = [row[j] * norms[j] for j in range(len(row))]
                groups = [range(len(row))] if n_of_m is None else [range(s, s + n_of_m[1]) for s in range(0, len(row), n_of_m[1])]
                for group in groups:
                    k = int(len(row) * sparsity) if n_of_m is None else n_of_m[0]
                    for j in sorted(group, key=lambda j: (score[j], j))[:k]:
                        mask[r, j] = True
            layer_masks[name] = mask
        with torch.no_grad():
            for name, lin in linears.items():
                lin.weight[layer_masks[name]] = 0
        masks.update({(layer.self_attn.layer_idx, name): m for name, m in layer_masks.items()})
    return masks


@pytest.mark.parametrize("variant", ["wanda-unstructured50", "wanda-2of4"])
def test_wanda_masks_equal_sequential_brute_force(family, variant):
    spec, ids = parse_variant(variant), calibration()
    expected = reference_wanda(tiny_model(family), ids, spec.sparsity, spec.n_of_m)
    model = tiny_model(family)
    prune_model(model, spec, ids, "cpu", batch_size=BATCH)
    for layer in model_parts(model).layers:
        for name, lin in layer.linears().items():
            assert torch.equal(lin.weight == 0, expected[(layer.index, name)]), (layer.index, name)


def layer_inputs(model, ids):
    """Each decoder layer's input hidden states over the batches of ``ids``, from the stock forward."""
    seen = {i: [] for i in range(len(model.model.layers))}
    hooks = [layer.register_forward_pre_hook(lambda _m, args, i=i: seen[i].append(args[0].clone()))
             for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        for batch in ids.split(BATCH):
            model(batch)
    for hook in hooks:
        hook.remove()
    return {i: torch.cat(v) for i, v in seen.items()}


@pytest.mark.parametrize(
    "family, overrides",
    [("llama", {}), ("qwen2", {}), ("qwen3", {}), ("llama", {"attn_implementation": "sdpa"}),
     ("mistral", {"sliding_window": 6}), ("qwen2", {"use_sliding_window": True, "sliding_window": 6, "max_window_layers": 1})],
)
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_each_layer_is_calibrated_on_the_pruned_previous_layers_outputs(family, overrides, method):
    attn = overrides.pop("attn_implementation", None)
    model = tiny_model(family, **overrides)
    if attn:
        model.set_attn_implementation(attn)
    ids = calibration()
    dense_inputs = layer_inputs(copy.deepcopy(model), ids)
    during = {i: [] for i in range(len(model.model.layers))}
    hooks = [layer.register_forward_pre_hook(lambda _m, args, kwargs, i=i: during[i].append(kwargs.get("hidden_states", args[0] if args else None).clone()), with_kwargs=True)
             for i, layer in enumerate(model.model.layers)]
    prune_model(model, parse_variant(f"{method}-unstructured50"), ids, "cpu", batch_size=BATCH)
    for hook in hooks:
        hook.remove()
    pruned_inputs = layer_inputs(model, ids)  # the stock forward of the finished pruned model
    n_batches = len(ids.split(BATCH))
    last = len(during) - 1
    for i, calls in during.items():
        # One statistics pass, then (except for the last layer) one pass producing the next inputs.
        assert len(calls) == (1 if i == last else 2) * n_batches
        stats_pass = torch.cat(calls[:n_batches])
        torch.testing.assert_close(stats_pass, pruned_inputs[i], rtol=1e-5, atol=1e-5)
        if i < last:
            assert torch.equal(torch.cat(calls[n_batches:]), stats_pass)
        if i == 0:
            assert torch.equal(stats_pass, dense_inputs[0])
        else:  # the inputs really are the pruned ones, not the dense model's
            assert (stats_pass - dense_inputs[i]).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["magnitude-unstructured50", "wanda-4of8", "sparsegpt-2of4"])
def test_only_decoder_layer_linear_weights_change(family, variant):
    model = tiny_model(family)
    before = copy.deepcopy(model.state_dict())
    rows = prune_model(model, parse_variant(variant), calibration(), "cpu", batch_size=BATCH)
    targets = {f"model.layers.{l.index}.{name}.weight" for l in model_parts(model).layers for name in l.linears()}
    after = model.state_dict()
    assert set(after) == set(before)
    for key in before:
        if key in targets:
            assert not torch.equal(after[key], before[key]), key
        else:  # embeddings, norms, biases, head
            assert torch.equal(after[key], before[key]), key
    assert len(rows) == len(targets) == 7 * model.config.num_hidden_layers
    for row in rows:
        weight = after[f"model.layers.{row['layer']}.{row['module']}.weight"]
        assert row["n_params"] == weight.numel() and row["n_zero"] == int((weight == 0).sum())
        assert row["sparsity"] == pytest.approx(0.5)


def test_saved_checkpoint_reloads_bit_identically(tmp_path):
    model = tiny_model("qwen2")
    prune_model(model, parse_variant("sparsegpt-unstructured50"), calibration(), "cpu", batch_size=BATCH)
    model.save_pretrained(tmp_path / "pruned")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned")
    original, loaded = model.state_dict(), reloaded.state_dict()
    assert set(original) == set(loaded)
    for key, value in original.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key


def forward_counter(model):
    calls = []
    model.model.embed_tokens.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize(
    "spec, message",
    [
        (PruneSpec(name="obs-unstructured50", method="obs", sparsity=0.5, n_of_m=None), "unknown pruning method 'obs'.*wanda"),
        (PruneSpec(name="wanda-4of4", method="wanda", sparsity=1.0, n_of_m=(4, 4)), "0 < N < M"),
        (PruneSpec(name="magnitude-5of4", method="magnitude", sparsity=1.25, n_of_m=(5, 4)), "0 < N < M"),
        (PruneSpec(name="wanda-unstructured100", method="wanda", sparsity=1.0, n_of_m=None), r"sparsity must be in \(0, 1\)"),
        (PruneSpec(name="wanda-2of4", method="wanda", sparsity=0.3, n_of_m=(2, 4)), "implies ratio 0.5"),
        (parse_variant("sparsegpt-3of6"), r"layer 0 self_attn.q_proj has d_in=64, not divisible by M=6"),
        (parse_variant("wanda-unstructured50"), "calibration_ids"),
    ],
)
def test_bad_input_fails_clearly_before_any_work(spec, message):
    model = tiny_model("llama")
    before = copy.deepcopy(model.state_dict())
    calls = forward_counter(model)
    ids = None if "calibration" in message else calibration()
    with pytest.raises(ValueError, match=message):
        prune_model(model, spec, ids, "cpu")
    assert not calls and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_out_of_vocabulary_ids_and_unknown_layouts_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 128\)"):
        prune_model(tiny_model("llama"), parse_variant("wanda-2of4"), calibration() + 200, "cpu")
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0))
    with pytest.raises(UnsupportedModelError, match="model.model"):
        prune_model(gpt2, parse_variant("wanda-2of4"), calibration(seqlen=4) % 64, "cpu")


def test_magnitude_needs_no_calibration_and_matches_per_matrix_rule():
    model = tiny_model("mistral")
    dense = copy.deepcopy(model)
    prune_model(model, parse_variant("magnitude-2of4"), None, "cpu")
    for layer, dense_layer in zip(model_parts(model).layers, model_parts(dense).layers):
        for name, lin in layer.linears().items():
            w = dense_layer.linears()[name].weight.detach().abs().reshape(lin.out_features, -1, 4)
            kept_min = torch.where((lin.weight == 0).reshape(w.shape), torch.inf, w).min(dim=-1).values
            pruned_max = torch.where((lin.weight == 0).reshape(w.shape), w, -torch.inf).max(dim=-1).values
            assert (pruned_max <= kept_min).all(), name


@pytest.mark.parametrize("variant", ["wanda-2of4", "sparsegpt-unstructured50"])
def test_bf16_weights_are_pruned_with_fp32_statistics(variant):
    """The paper-scale path: weights stay bf16 and every matrix gets its exact sparsity; the statistics
    are fp32, so the brute-force reference (float64 statistics over the same bf16 forward) picks the same
    Wanda masks, and SparseGPT's bf16 result stays close to its fp32 counterpart."""
    spec = parse_variant(variant)
    ids = calibration()
    model = tiny_model("llama").to(torch.bfloat16)
    reference = copy.deepcopy(model)
    prune_model(model, spec, ids, batch_size=BATCH)
    for name, param in model.named_parameters():
        assert param.dtype == torch.bfloat16, name
    for layer in model_parts(model).layers:
        for linear in (layer.layer.self_attn.q_proj, layer.layer.mlp.down_proj):
            zeros = (linear.weight == 0).sum().item()
            assert zeros == linear.weight.numel() // 2
    if spec.method == "wanda":
        masks = reference_wanda(reference, ids, spec.sparsity, spec.n_of_m)
        for layer in model_parts(model).layers:
            for name, lin in layer.linears().items():
                assert torch.equal(lin.weight == 0, masks[(layer.index, name)]), (layer.index, name)
    else:
        fp32 = tiny_model("llama")
        prune_model(fp32, spec, ids, batch_size=BATCH)
        agree = [((a == 0) == (b == 0)).float().mean().item()
                 for a, b in zip(model.parameters(), fp32.parameters()) if a.dim() == 2]
        assert min(agree) > 0.9
