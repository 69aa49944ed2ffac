"""quantize_model on tiny models: stored weights on their grids, stock reload, the table, batches, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunescope.adapter import model_parts
from prunescope.quantization import GRID_FILE, load_grids, on_grid, quantize, quantize_model, save_grids
from prunescope.variants import QuantSpec, parse_variant
from tests.conftest import tiny_model

BATCH = 3
VARIANTS = ["quant-rtn-w4g16", "quant-gptq-w3g32", "quant-awq-w4g16", "quant-gptq-w4", "quant-awq-w3"]


def calibration(n=7, seqlen=20, seed=0):
    return torch.randint(0, 128, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def target_names(model):
    return {f"model.layers.{l.index}.{name}" for l in model_parts(model).layers for name in l.linears()}


def outlier_norms(model, seed=1):
    """Norm weights with a few 10x channels, as trained LLMs have: activations with outlier features."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model_parts(model).layers:
            for norm in (layer.attn_norm, layer.mlp_norm):
                scales = torch.exp(0.5 * torch.randn(norm.weight.numel(), generator=generator))
                scales[torch.randperm(norm.weight.numel(), generator=generator)[:3]] *= 10
                norm.weight.copy_(scales)
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_stored_checkpoint_reloads_with_stock_from_pretrained_on_its_grids(family, variant, tmp_path):
    model = tiny_model(family)
    result = quantize_model(model, parse_variant(variant), calibration(), "cpu", batch_size=BATCH)
    model.save_pretrained(tmp_path)
    save_grids(result.grids, tmp_path / GRID_FILE)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    grids = load_grids(tmp_path / GRID_FILE)
    assert set(grids) == target_names(model)
    modules = dict(reloaded.named_modules())
    for name, grid in grids.items():
        assert on_grid(modules[name].weight, grid), name
    saved, loaded = model.state_dict(), reloaded.state_dict()
    assert set(saved) == set(loaded) and all(torch.equal(loaded[k], v) for k, v in saved.items())
    ids = calibration(2, 16, seed=5)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("variant", ["quant-gptq-w4g16", "quant-awq-w4g16"])
def test_bf16_weights_stay_bf16_and_on_their_grids(variant, tmp_path):
    model = tiny_model("llama").to(torch.bfloat16)
    result = quantize_model(model, parse_variant(variant), calibration(), "cpu", batch_size=BATCH)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    model.save_pretrained(tmp_path)
    modules = dict(AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).named_modules())
    assert all(on_grid(modules[name].weight, grid) for name, grid in result.grids.items())
    assert max(row["output_error"] for row in result.rows) < 0.3


@pytest.mark.parametrize("variant", ["quant-rtn-w4g16", "quant-gptq-w4g16", "quant-awq-w4g16"])
def test_only_decoder_linears_change_and_for_awq_the_norms_and_v_bias_that_take_the_scales(family, variant):
    model = tiny_model(family)
    with torch.no_grad():  # Qwen2's q/k/v biases start at zero; make them visible
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    before = copy.deepcopy(model.state_dict())
    rows = quantize_model(model, parse_variant(variant), calibration(), "cpu", batch_size=BATCH).rows
    weights = {f"{name}.weight" for name in target_names(model)}
    folded = set()  # AWQ: 1/s goes into the norms before q/k/v and gate/up, and into v_proj's bias
    if "awq" in variant:
        alpha = {(r["layer"], r["module"]): r["awq_alpha"] for r in rows}
        for l in range(model.config.num_hidden_layers):
            if alpha[(l, "self_attn.q_proj")] > 0:
                folded.add(f"model.layers.{l}.input_layernorm.weight")
            if alpha[(l, "mlp.gate_proj")] > 0:
                folded.add(f"model.layers.{l}.post_attention_layernorm.weight")
            if family == "qwen2" and alpha[(l, "self_attn.o_proj")] > 0:
                folded.add(f"model.layers.{l}.self_attn.v_proj.bias")
        assert folded
    after = model.state_dict()
    for key in before:
        assert torch.equal(after[key], before[key]) != (key in weights | folded), key
    assert len(rows) == 7 * model.config.num_hidden_layers
    assert {(r["layer"], r["module"]) for r in rows} == {(l, n) for l in range(3) for n in model_parts(model).layers[0].linears()}
    assert all(r["bits"] == 4 and r["group_size"] == 16 and r["method"] == parse_variant(variant).method for r in rows)
    assert all((r["awq_alpha"] is not None) == ("awq" in variant) for r in rows)


def layer0_inputs(model, ids):
    """Inputs of layer 0's linears and norms in the stock forward of ``model`` (identical for every variant)."""
    parts = model_parts(model).layers[0]
    modules = {**parts.linears(), "attn_norm": parts.attn_norm, "mlp_norm": parts.mlp_norm}
    seen = {name: [] for name in modules}
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=name: seen[n].append(args[0])) for name, m in modules.items()]
    with torch.no_grad():
        for batch in ids.split(BATCH):
            model(batch)
    for hook in hooks:
        hook.remove()
    return {name: torch.cat(v).reshape(-1, v[0].shape[-1]) for name, v in seen.items()}


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_table_errors_match_a_direct_computation_on_layer_0(method):
    """Layer 0 sees the same inputs in every variant; its table row must equal ||W - W'|| / ||W|| and
    ||W X - W' X'|| / ||W X|| computed from the captured inputs (AWQ: X' = the stored norm applied to the
    dense norm's input, which carries the folded 1/s)."""
    dense = outlier_norms(tiny_model("qwen2"))
    ids = calibration()
    x = layer0_inputs(dense, ids)
    model = copy.deepcopy(dense)
    rows = quantize_model(model, parse_variant(f"quant-{method}-w3g16"), ids, "cpu", batch_size=BATCH).rows
    stored = model_parts(model).layers[0]
    original = model_parts(dense).layers[0].linears()
    checked = 0
    for row in (r for r in rows if r["layer"] == 0):
        name = row["module"]
        w, w_new = original[name].weight, stored.linears()[name].weight
        inputs = x[name]
        if method == "awq":
            if name not in ("self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj"):
                continue  # o/down read re-scaled v/up outputs; v/up outputs carry o's/down's 1/s
            norm = stored.attn_norm if name.startswith("self_attn") else stored.mlp_norm
            inputs_new = norm(x["attn_norm" if name.startswith("self_attn") else "mlp_norm"])
        else:
            inputs_new = inputs
            assert row["weight_error"] == pytest.approx(((w - w_new).norm() / w.norm()).item(), rel=1e-5)
        direct = ((inputs @ w.T - inputs_new @ w_new.T).norm() / (inputs @ w.T).norm()).item()
        assert row["output_error"] == pytest.approx(direct, rel=2e-3), name
        checked += 1
    assert checked == (3 if method == "awq" else 7)


def test_gptq_and_awq_output_errors_below_rtn_on_layer_0():
    dense = outlier_norms(tiny_model("llama"))
    ids = calibration(16, 32, seed=1)
    errors = {}
    for method in ("rtn", "gptq", "awq"):
        rows = quantize_model(copy.deepcopy(dense), parse_variant(f"quant-{method}-w3g16"), ids, "cpu", batch_size=4).rows
        errors[method] = {r["module"]: r["output_error"] for r in rows if r["layer"] == 0}
    for name in errors["rtn"]:
        assert errors["gptq"][name] < errors["rtn"][name], (name, errors["gptq"][name], errors["rtn"][name])
    # AWQ scales whole groups (q/k/v, gate/up): its summed squared error over each group is never above RTN's.
    for group in (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("mlp.gate_proj", "mlp.up_proj")):
        assert sum(errors["awq"][n] for n in group) < sum(errors["rtn"][n] for n in group), group


def test_each_layer_is_calibrated_on_the_quantised_previous_layers_outputs():
    model = tiny_model("mistral")
    ids = calibration()
    during = {i: [] for i in range(3)}
    hooks = [layer.register_forward_pre_hook(lambda _m, args, kwargs, i=i: during[i].append(kwargs.get("hidden_states", args[0] if args else None).clone()), with_kwargs=True)
             for i, layer in enumerate(model.model.layers)]
    quantize_model(model, parse_variant("quant-gptq-w3g16"), ids, "cpu", batch_size=BATCH)
    for hook in hooks:
        hook.remove()
    final = {i: [] for i in range(3)}
    hooks = [layer.register_forward_pre_hook(lambda _m, args, kwargs, i=i: final[i].append(kwargs.get("hidden_states", args[0] if args else None)), with_kwargs=True)
             for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        for batch in ids.split(BATCH):
            model(batch)
    for hook in hooks:
        hook.remove()
    n_batches = len(ids.split(BATCH))
    for i in range(3):
        torch.testing.assert_close(torch.cat(during[i][:n_batches]), torch.cat(final[i]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_batch_size_does_not_change_the_result(method):
    ids = calibration()
    spec = parse_variant(f"quant-{method}-w4g16")
    one, many = tiny_model("qwen3"), tiny_model("qwen3")
    result_one = quantize_model(one, spec, ids, "cpu", batch_size=1)
    result_many = quantize_model(many, spec, ids, "cpu", batch_size=7)
    for a, b in zip(result_one.rows, result_many.rows):
        assert (a["layer"], a["module"], a["awq_alpha"]) == (b["layer"], b["module"], b["awq_alpha"])
        assert a["output_error"] == pytest.approx(b["output_error"], rel=1e-4)
        assert a["weight_error"] == pytest.approx(b["weight_error"], rel=1e-4)
    modules_one, modules_many = dict(one.named_modules()), dict(many.named_modules())
    for name, grid in result_one.grids.items():
        other = result_many.grids[name]
        torch.testing.assert_close(grid.scale, other.scale, rtol=1e-5, atol=0)
        assert torch.equal(grid.zero, other.zero), name
        # The same integer codes (the fp32 statistics differ only in summation order).
        assert torch.equal(quantize(modules_one[name].weight, grid), quantize(modules_many[name].weight, other)), name
    for (name, p), q in zip(one.named_parameters(), many.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_rtn_needs_no_calibration_and_then_reports_no_output_error():
    with_data, without = tiny_model("llama"), tiny_model("llama")
    spec = parse_variant("quant-rtn-w3")
    rows = quantize_model(with_data, spec, calibration(), "cpu", batch_size=BATCH).rows
    bare = quantize_model(without, spec, None, "cpu").rows
    assert all(torch.equal(p, q) for p, q in zip(with_data.parameters(), without.parameters()))
    assert all(r["output_error"] is None for r in bare) and all(r["output_error"] > 0 for r in rows)
    assert [r["weight_error"] for r in bare] == pytest.approx([r["weight_error"] for r in rows])


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        (QuantSpec("quant-rtn-w9g16", "rtn", 9, 16), {}, r"'quant-rtn-w9g16': bits must be in 2\.\.8, got 9"),
        (QuantSpec("quant-gptq-w1", "gptq", 1, None), {}, r"bits must be in 2\.\.8, got 1"),
        (parse_variant("quant-awq-w4g48"), {},
         r"layer 0 self_attn\.q_proj has d_in=64, not divisible by group size 48; allowed group sizes for this "
         r"model: 1, 2, 4, 8, 16, 32 \(divisors of every d_in\), or none .*'quant-awq-w4'"),
        (parse_variant("quant-gptq-w4g64"), {}, r"layer 0 mlp\.down_proj has d_in=96, not divisible by group size 64"),
        (QuantSpec("quant-hqq-w4g16", "hqq", 4, 16), {}, r"not a quantisation variant; allowed methods: rtn, gptq, awq"),
        (parse_variant("wanda-2of4"), {}, "not a quantisation variant"),
        (parse_variant("quant-gptq-w4g16"), {"ids": None}, "gptq needs calibration_ids"),
        (parse_variant("quant-awq-w4g16"), {"awq_grid": 1}, r"awq_grid must be an integer >= 2 .*got 1"),
        (parse_variant("quant-gptq-w4g16"), {"gptq_percdamp": 0.0}, r"gptq_percdamp must be > 0, got 0\.0"),
        (parse_variant("quant-gptq-w4g16"), {"gptq_blocksize": 0}, r"gptq_blocksize must be an integer >= 1, got 0"),
        (parse_variant("quant-gptq-w4g16"), {"gptq_act_order": "yes"}, r"gptq_act_order must be true or false, got 'yes'"),
        (parse_variant("quant-awq-w4g16"), {"ids": calibration() + 200}, r"token ids in \[0, 128\)"),
    ],
)
def test_bad_input_fails_clearly_before_any_work(spec, kwargs, message):
    model = tiny_model("llama")
    before = copy.deepcopy(model.state_dict())
    calls = []
    model.model.embed_tokens.register_forward_pre_hook(lambda *_: calls.append(1))
    ids = kwargs.pop("ids", calibration())
    with pytest.raises(ValueError, match=message):
        quantize_model(model, spec, ids, "cpu", **kwargs)
    assert not calls and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
