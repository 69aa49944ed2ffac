"""Generation probe: dense reference once, variants free-running and teacher-forced."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_model

from prunescope.probes.decoding import DecodingSettings, prompt_seed
from prunescope.probes.generation import dense_trajectories, reference_records, variant_records

PROMPTS = {"a": [5, 17, 33, 9, 71, 4], "b": [8, 8, 40]}
SETTINGS = DecodingSettings(temperature=1.0, max_new_tokens=8, seed=5, eos_token_ids=())


def stock(model, prompt_id):
    """Stock generate of one prompt, seeded with that prompt's stream."""
    prompt = PROMPTS[prompt_id]
    torch.manual_seed(prompt_seed(SETTINGS.seed, prompt_id))
    out = model.generate(
        torch.tensor([prompt]), do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=None,
        max_new_tokens=SETTINGS.max_new_tokens, output_hidden_states=True, return_dict_in_generate=True,
    )
    return out.sequences[0, len(prompt):].tolist(), torch.stack([s[-1][0, -1] for s in out.hidden_states])


def test_reference_is_stock_generate(family):
    model = tiny_model(family)
    reference = dense_trajectories(model, PROMPTS, SETTINGS)
    for prompt_id, prompt in PROMPTS.items():
        tokens, hidden = stock(model, prompt_id)
        assert reference[prompt_id].tokens == tokens
        assert torch.equal(reference[prompt_id].hidden, hidden)
    rows = reference_records(reference)
    assert len(rows) == sum(len(t.tokens) for t in reference.values())
    assert {(r["mode"], r["layer"], r["sublayer"], r["token_var"]) for r in rows} == {("reference", -1, "final", -1)}
    assert all(r["h_var"] is None for r in rows)


@pytest.mark.parametrize("mode", ["free", "forced"])
def test_identical_variant_reproduces_the_reference(family, mode):
    model = tiny_model(family)
    reference = dense_trajectories(model, PROMPTS, SETTINGS)
    rows = variant_records(copy.deepcopy(model), PROMPTS, SETTINGS, reference, mode=mode)
    for r in rows:
        ref = reference[r["prompt_id"]]
        assert r["mode"] == mode and r["h_ref"] is None
        assert torch.equal(r["h_var"], ref.hidden[r["step"]])
        assert r["token_var"] == r["token_ref"] == ref.tokens[r["step"]]
    assert len(rows) == sum(len(t.tokens) for t in reference.values())


def test_free_mode_is_the_variant_own_sampled_run():
    dense, variant = tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    reference = dense_trajectories(dense, PROMPTS, SETTINGS)
    rows = variant_records(variant, PROMPTS, SETTINGS, reference, mode="free")
    for prompt_id, prompt in PROMPTS.items():
        tokens, hidden = stock(variant, prompt_id)
        mine = [r for r in rows if r["prompt_id"] == prompt_id]
        assert [r["token_var"] for r in mine] == tokens
        assert [r["token_ref"] for r in mine] == reference[prompt_id].tokens
        assert torch.equal(torch.stack([r["h_var"] for r in mine]), hidden)
    assert any(r["token_var"] != r["token_ref"] for r in rows)  # different models really diverge


def test_forced_mode_feeds_the_dense_tokens():
    dense, variant = tiny_model("qwen3", seed=0), tiny_model("qwen3", seed=1)
    reference = dense_trajectories(dense, PROMPTS, SETTINGS)
    rows = variant_records(variant, PROMPTS, SETTINGS, reference, mode="forced")
    for prompt_id, prompt in PROMPTS.items():
        ref_tokens = reference[prompt_id].tokens
        mine = [r for r in rows if r["prompt_id"] == prompt_id]
        assert [r["token_var"] for r in mine] == ref_tokens
        # Independent: one uncached forward of the variant over prompt + dense tokens, read at each step.
        with torch.no_grad():
            hidden = variant(torch.tensor([prompt + ref_tokens[:-1]]), output_hidden_states=True).hidden_states[-1][0]
        got = torch.stack([r["h_var"] for r in mine])
        torch.testing.assert_close(got, hidden[len(prompt) - 1 :], rtol=1e-5, atol=1e-5)


def test_reference_shorter_than_variant_run_marks_missing_tokens():
    dense = tiny_model("llama")
    settings = DecodingSettings(temperature=0.0, max_new_tokens=6, seed=0, eos_token_ids=())
    reference = dense_trajectories(dense, PROMPTS, settings)
    first = reference["a"].tokens[0]
    # A dense run that stopped at its first token (as if it were EOS) against a full-length variant run.
    stopped = dense_trajectories(dense, {"a": PROMPTS["a"]}, DecodingSettings(0.0, 6, 0, eos_token_ids=(first,)))
    assert stopped["a"].tokens == [first]
    rows = variant_records(dense, {"a": PROMPTS["a"]}, settings, stopped, mode="free")
    assert [r["token_ref"] for r in rows] == [first] + [-1] * 5


def test_bad_mode_and_missing_reference_are_rejected():
    model = tiny_model("llama")
    reference = dense_trajectories(model, {"a": PROMPTS["a"]}, SETTINGS)
    with pytest.raises(ValueError, match="mode 'teacher'"):
        variant_records(model, PROMPTS, SETTINGS, reference, mode="teacher")
    with pytest.raises(ValueError, match=r"no dense reference for prompts \['b'\]"):
        variant_records(model, PROMPTS, SETTINGS, reference)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_both_modes_at_once_equal_each_mode_alone(batch_size):
    """The workflow decodes a prompt's free and forced runs side by side from one prefill."""
    dense, variant = tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    reference = dense_trajectories(dense, PROMPTS, SETTINGS)
    both = variant_records(variant, PROMPTS, SETTINGS, reference, ("free", "forced"), batch_size=batch_size)
    alone = [r for mode in ("free", "forced") for r in variant_records(variant, PROMPTS, SETTINGS, reference, mode)]
    assert [(r["mode"], r["prompt_id"], r["step"], r["token_ref"], r["token_var"]) for r in both] == \
        [(r["mode"], r["prompt_id"], r["step"], r["token_ref"], r["token_var"]) for r in alone]
    for a, b in zip(both, alone):
        torch.testing.assert_close(a["h_var"], b["h_var"], rtol=1e-5, atol=1e-5)
    assert any(r["token_var"] != r["token_ref"] for r in both if r["mode"] == "free")  # the runs really differ


def test_both_modes_share_one_prefill():
    model = tiny_model("qwen3")
    reference = dense_trajectories(model, PROMPTS, SETTINGS)
    shapes = []
    handle = model.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                             with_kwargs=True)
    try:
        rows = variant_records(model, PROMPTS, SETTINGS, reference, ("free", "forced"), batch_size=2)
    finally:
        handle.remove()
    assert shapes[0] == (2, 6) and shapes[1] == (4, 1)  # two prompts prefilled once, then four runs decode
    for r in rows:  # an identical variant: the reference's tokens, its vectors to fp32 tolerance
        ref = reference[r["prompt_id"]]
        assert r["token_var"] == r["token_ref"] == ref.tokens[r["step"]]
        torch.testing.assert_close(r["h_var"], ref.hidden[r["step"]], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one or more distinct modes"):
        variant_records(model, PROMPTS, SETTINGS, reference, ("free", "free"))
