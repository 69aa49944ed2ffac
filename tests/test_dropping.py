"""Inter-layer dropping: hooks on stock models, materialised block drops, similarity scores, selection, plan files."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import tiny_model
from transformers import AutoModelForCausalLM

from prunescope.adapter import model_parts
from prunescope.dropping import (
    PLAN_FILE,
    DropPlan,
    DropPlanError,
    apply_drops,
    check_fingerprint,
    iterative_drops,
    layer_scores,
    make_plan_record,
    materialize_block_drops,
    model_fingerprint,
    plan_from_record,
    read_plan_file,
    select_drops,
    write_plan_file,
)

PLANS = {
    "attn0": DropPlan(attn={0}),  # layer 0: the cache layer transformers reads the sequence length from
    "mlp1": DropPlan(mlp={1}),
    "block0": DropPlan(block={0}),
    "mixed": DropPlan(attn={0}, mlp={2}, block={1}),
}


def ids_for(seed: int, shape=(2, 9)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 128, shape, generator=gen)


def greedy(model, ids, attention_mask=None, use_cache=True, n=8):
    return model.generate(ids, attention_mask=attention_mask, max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=use_cache)


# ---------------------------------------------------------------- hooks


def test_empty_plan_gives_identical_logits(family):
    model, ids = tiny_model(family), ids_for(0)
    with torch.no_grad():
        stock = model(ids).logits
        with apply_drops(model, DropPlan()):
            assert torch.equal(model(ids).logits, stock)
        with apply_drops(model, PLANS["mixed"]):
            assert not torch.allclose(model(ids).logits, stock)
        assert torch.equal(model(ids).logits, stock), "remove() must restore the stock model"


def _capture_layer_io(layer):
    seen = {}
    pre = layer.register_forward_pre_hook(
        lambda m, args, kwargs: seen.__setitem__("x", args[0] if args else kwargs["hidden_states"]),
        with_kwargs=True)
    post = layer.register_forward_hook(lambda m, args, out: seen.__setitem__("out", out))
    return seen, (pre, post)


def test_dropped_attention_layer_is_x_plus_mlp_of_norm_x(family):
    model, ids = tiny_model(family), ids_for(1)
    lp = model_parts(model).layers[1]
    seen, handles = _capture_layer_io(lp.layer)
    with torch.no_grad(), apply_drops(model, DropPlan(attn={1})):
        model(ids)
        x = seen["x"]
        expected = x + lp.mlp(lp.mlp_norm(x))  # by hand, from the layer's own modules
    for h in handles:
        h.remove()
    torch.testing.assert_close(seen["out"], expected, rtol=0, atol=0)


def test_dropped_mlp_layer_is_x_plus_attention_and_dropped_block_is_identity(family):
    model, ids = tiny_model(family), ids_for(2)
    lp = model_parts(model).layers[2]
    seen, handles = _capture_layer_io(lp.layer)
    residual = {}
    lp.mlp_norm.register_forward_pre_hook(lambda m, args: residual.__setitem__("y", args[0]))
    with torch.no_grad():
        with apply_drops(model, DropPlan(mlp={2})):
            model(ids)
            assert torch.equal(seen["out"], residual["y"])  # layer output = X + Attn(LN X), nothing added
            assert not torch.equal(residual["y"], seen["x"])
        with apply_drops(model, DropPlan(block={2})):
            model(ids)
            assert torch.equal(seen["out"], seen["x"])
    for h in handles:
        h.remove()


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_generate_with_cache_equals_without(family, plan):
    model, ids = tiny_model(family), ids_for(3)
    with torch.no_grad(), apply_drops(model, plan):
        cached = greedy(model, ids, use_cache=True)
        uncached = greedy(model, ids, use_cache=False)
    assert cached.shape == (2, 9 + 8)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("plan", [PLANS["mixed"], PLANS["attn0"]], ids=["mixed", "attn0"])
def test_padded_batch_matches_each_row_alone(family, plan):
    model = tiny_model(family)
    long_row, short_row = ids_for(4, (1, 7))[0], ids_for(5, (1, 4))[0]
    pad = torch.zeros(3, dtype=torch.long)
    with torch.no_grad(), apply_drops(model, plan):
        alone = [model(row[None]).logits[0] for row in (long_row, short_row)]
        # left padding: positions must count real tokens only, as generate() does
        left = torch.stack([long_row, torch.cat([pad, short_row])])
        left_mask = torch.ones_like(left)
        left_mask[1, :3] = 0
        positions = (left_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(left, attention_mask=left_mask, position_ids=positions).logits
        torch.testing.assert_close(out[0], alone[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1, 3:], alone[1], atol=1e-5, rtol=1e-5)
        # right padding
        right = torch.stack([long_row, torch.cat([short_row, pad])])
        right_mask = torch.ones_like(right)
        right_mask[1, 4:] = 0
        out = model(right, attention_mask=right_mask).logits
        torch.testing.assert_close(out[1, :4], alone[1], atol=1e-5, rtol=1e-5)
        # cached greedy decoding of the left-padded batch = each row decoded alone
        batch_tokens = greedy(model, left, attention_mask=left_mask)
        for i, row in enumerate((long_row, short_row)):
            assert torch.equal(batch_tokens[i, 7:], greedy(model, row[None])[0, len(row):])


# ---------------------------------------------------------------- materialised block drops


@pytest.mark.parametrize("blocks", [[1], [0, 2]])
def test_materialised_block_drop_matches_hooks_and_reloads(family, blocks, tmp_path):
    model, ids = tiny_model(family), ids_for(6)
    small = materialize_block_drops(model, blocks)
    assert small.config.num_hidden_layers == 3 - len(blocks) == len(small.model.layers)
    assert [layer.self_attn.layer_idx for layer in small.model.layers] == list(range(3 - len(blocks)))
    assert len(model.model.layers) == 3, "the input model is left unchanged"
    if getattr(small.config, "layer_types", None) is not None:
        assert len(small.config.layer_types) == small.config.num_hidden_layers
    with torch.no_grad():
        with apply_drops(model, DropPlan(block=blocks)):
            hooked_logits, hooked_tokens = model(ids).logits, greedy(model, ids)
        torch.testing.assert_close(small(ids).logits, hooked_logits, rtol=0, atol=0)
        assert torch.equal(greedy(small, ids), hooked_tokens)
        small.save_pretrained(tmp_path)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32,
                                                        attn_implementation="eager").eval()
        assert reloaded.config.num_hidden_layers == 3 - len(blocks)
        torch.testing.assert_close(reloaded(ids).logits, hooked_logits, rtol=0, atol=0)


def test_materialise_rejects_bad_input():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=r"\[3\] are outside 0..2"):
        materialize_block_drops(model, [3])
    with pytest.raises(ValueError, match="all 3 blocks"):
        materialize_block_drops(model, [0, 1, 2])


def test_apply_drops_rejects_bad_plans():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=r"'mlp': layer indices \[5\] are outside 0..2"):
        apply_drops(model, DropPlan(mlp={5}))
    handle = apply_drops(model, DropPlan(attn={0}))
    with pytest.raises(RuntimeError, match="already has drops applied"):
        apply_drops(model, DropPlan(mlp={1}))
    handle.remove()
    apply_drops(model, DropPlan(mlp={1})).remove()


# ---------------------------------------------------------------- scores


def hand_scores(model, ids, plan=DropPlan()):
    """Run the layers one by one from their modules, with an explicit causal mask, and average cosines."""
    parts = model_parts(model)
    seq_len = ids.shape[1]
    h = parts.embed(ids)
    rope = parts.rotary(h, torch.arange(seq_len)[None])
    mask = torch.full((seq_len, seq_len), float("-inf")).triu(1)[None, None]
    layer_outputs, sims = [], {"attn": [], "mlp": [], "block": []}

    def mean_cos(u, v):
        u, v = u.double(), v.double()
        return ((u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))).mean().item()

    for lp in parts.layers:
        x = h
        dropped_block = lp.index in plan.block
        if dropped_block or lp.index in plan.attn:
            a = torch.zeros_like(x)
        else:
            a = lp.attn(hidden_states=lp.attn_norm(x), position_embeddings=rope, attention_mask=mask)[0]
        y = x + a
        m = torch.zeros_like(y) if dropped_block or lp.index in plan.mlp else lp.mlp(lp.mlp_norm(y))
        h = y + m
        sims["attn"].append(mean_cos(x, x + a))
        sims["mlp"].append(mean_cos(y, y + m))
        sims["block"].append(mean_cos(x, h))
        layer_outputs.append(h)
    return sims, layer_outputs


def test_hand_reference_reproduces_the_model(family):
    """The reference used below is itself checked against the stock forward pass."""
    model, ids = tiny_model(family), ids_for(7, (3, 12))
    with torch.no_grad():
        states = model(ids, output_hidden_states=True).hidden_states
        _, outputs = hand_scores(model, ids)
        for i, out in enumerate(outputs[:-1]):
            torch.testing.assert_close(out, states[i + 1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model_parts(model).final_norm(outputs[-1]), states[-1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("plan", [DropPlan(), DropPlan(attn={1}), DropPlan(block={0}, mlp={2})],
                         ids=["dense", "attn1", "block0_mlp2"])
def test_scores_match_hand_computation(family, plan):
    model, ids = tiny_model(family), ids_for(8, (3, 12))
    table = layer_scores(model, ids, "cpu", batch_size=2, dropped=plan)
    assert list(table.columns) == ["unit", "layer", "similarity", "importance", "n_tokens"]
    assert (table["n_tokens"] == 36).all()
    with torch.no_grad():
        expected, _ = hand_scores(model, ids, plan)
    for unit, values in expected.items():
        got = table[table["unit"] == unit].sort_values("layer")
        assert got["layer"].tolist() == [0, 1, 2]
        assert got["similarity"].tolist() == pytest.approx(values, abs=2e-6)
        assert (got["importance"] + got["similarity"]).tolist() == pytest.approx([1.0] * 3)
    again = layer_scores(model, ids, "cpu", batch_size=3, dropped=plan)
    pd.testing.assert_frame_equal(table, again, check_exact=False, atol=1e-6, rtol=0)
    pd.testing.assert_frame_equal(table, layer_scores(model, ids, "cpu", batch_size=2, dropped=plan))


def test_scores_reject_bad_calibration():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=r"LongTensor \[n, seqlen\]"):
        layer_scores(model, torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="outside 0..127"):
        layer_scores(model, torch.full((1, 4), 500))


# ---------------------------------------------------------------- selection


def _table(unit, sims):
    return pd.DataFrame({"unit": unit, "layer": range(len(sims)), "similarity": sims})


def test_select_drops_highest_similarity_ties_to_lower_index():
    table = pd.concat([_table("attn", [0.9, 0.95, 0.95, 0.1]), _table("mlp", [0.5, 0.5, 0.5, 0.7])])
    assert select_drops(table, "attn", 1) == [1]
    assert select_drops(table, "attn", 2) == [1, 2]
    assert select_drops(table, "attn", 3) == [0, 1, 2]
    assert select_drops(table, "mlp", 2) == [0, 3]
    assert select_drops(table, "mlp", 1, exclude=[3]) == [0]


def test_select_drops_bad_input():
    table = _table("attn", [0.9, 0.8, 0.7])
    with pytest.raises(DropPlanError, match=r"k=4 exceeds the 3 attn units.*3 layers"):
        select_drops(table, "attn", 4)
    with pytest.raises(DropPlanError, match=r"unknown drop unit 'head'; allowed: attn, mlp, block"):
        select_drops(table, "head", 1)
    with pytest.raises(DropPlanError, match="k=0"):
        select_drops(table, "attn", 0)
    with pytest.raises(DropPlanError, match="no complete set of 'mlp' rows"):
        select_drops(table, "mlp", 1)
    with pytest.raises(DropPlanError, match="iterative_drops"):
        select_drops(table, "attn", 1, selection="iterative")


@pytest.mark.parametrize("unit", ["attn", "block"])
def test_iterative_drops_rescore_after_each_drop(unit):
    model, ids = tiny_model("qwen2"), ids_for(9, (2, 10))
    chosen, similarity = iterative_drops(model, ids, unit, 2, "cpu")
    expected, expected_similarity = [], {}
    with torch.no_grad():
        for _ in range(2):
            sims, _ = hand_scores(model, ids, DropPlan.of(unit, expected))
            best = max((i for i in range(3) if i not in expected), key=lambda i: (sims[unit][i], -i))
            expected.append(best)
            expected_similarity[best] = sims[unit][best]
    assert chosen == expected
    assert similarity == pytest.approx(expected_similarity, abs=2e-6)
    with pytest.raises(DropPlanError, match="k=4 exceeds"):
        iterative_drops(model, ids, unit, 4, "cpu")


# ---------------------------------------------------------------- plan files


def _record(model, **overrides):
    table = _table("mlp", [0.2, 0.9, 0.8])
    args = dict(model_name="tiny", variant="drop-mlp-2", unit="mlp", k=2, layers=select_drops(table, "mlp", 2),
                scores=table, calibration_settings={"n_samples": 2, "seqlen": 10},
                fingerprint=model_fingerprint(model, "tiny"))
    args.update(overrides)
    return make_plan_record(**args)


# drop_spec.json as the drop_spec rule writes it: keys sorted, two-space indent, a final newline. Written out
# by hand so that any change to the file format (which would change the default run's outputs) fails here.
MISTRAL_PLAN_FILE = """\
{
  "calibration": {
    "n_samples": 2,
    "seqlen": 10
  },
  "fingerprint": {
    "hidden_size": 64,
    "model": "tiny",
    "model_type": "mistral",
    "num_hidden_layers": 3,
    "vocab_size": 128
  },
  "format": "prunescope.drop_spec/1",
  "k": 2,
  "layers": [
    1,
    2
  ],
  "model": "tiny",
  "selection": "one_shot",
  "similarity": {
    "1": 0.9,
    "2": 0.8
  },
  "unit": "mlp",
  "variant": "drop-mlp-2"
}
"""


def test_plan_file_round_trip(tmp_path):
    model = tiny_model("mistral")
    record = _record(model)
    assert record["layers"] == [1, 2] and record["similarity"] == {"1": 0.9, "2": 0.8}
    assert record["fingerprint"] == {"model_type": "mistral", "num_hidden_layers": 3, "hidden_size": 64,
                                     "vocab_size": 128, "model": "tiny"}
    assert PLAN_FILE == "drop_spec.json"
    write_plan_file(record, tmp_path / PLAN_FILE)
    assert (tmp_path / PLAN_FILE).read_text() == MISTRAL_PLAN_FILE
    assert read_plan_file(tmp_path / PLAN_FILE) == record
    check_fingerprint(record, model, "tiny")
    assert plan_from_record(record) == DropPlan(mlp={1, 2})


def test_plan_file_bad_input(tmp_path):
    model = tiny_model("llama")
    record = _record(model)
    with pytest.raises(DropPlanError, match=r"made for model 'tiny'.*hidden_size: recorded 64 vs model 32"):
        check_fingerprint(record, tiny_model("llama", hidden_size=32))
    with pytest.raises(DropPlanError, match="model_type: recorded 'llama' vs model 'qwen2'"):
        check_fingerprint(record, tiny_model("qwen2"))
    with pytest.raises(DropPlanError, match="model: recorded 'tiny' vs model 'other'"):
        check_fingerprint(record, model, "other")
    with pytest.raises(DropPlanError, match="expected 'drop-mlp-2'"):
        _record(model, variant="drop-attn-2")
    with pytest.raises(DropPlanError, match=r"no mlp similarity score for layers \[5\]"):
        _record(model, layers=[1, 5])
    with pytest.raises(DropPlanError, match="unknown selection 'greedy'; allowed: one_shot, iterative"):
        _record(model, selection="greedy")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_plan_file(tmp_path / "missing.json")
    broken = dict(record)
    del broken["fingerprint"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(DropPlanError, match=r"missing keys \['fingerprint'\]"):
        read_plan_file(tmp_path / "broken.json")
    (tmp_path / "oob.json").write_text(json.dumps({**record, "layers": [1, 3]}))
    with pytest.raises(DropPlanError, match="distinct indices in 0..2"):
        read_plan_file(tmp_path / "oob.json")
    (tmp_path / "selection.json").write_text(json.dumps({**record, "selection": "greedy"}))
    with pytest.raises(DropPlanError, match="unknown selection 'greedy'"):
        read_plan_file(tmp_path / "selection.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DropPlanError, match="list.json: expected a JSON object, got list"):
        read_plan_file(tmp_path / "list.json")
    with pytest.raises(DropPlanError, match="unknown drop unit 'head'"):
        DropPlan.of("head", [0])
