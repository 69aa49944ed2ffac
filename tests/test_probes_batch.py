"""Batched probes: results do not depend on the batch (batch 1 vs 2 vs 5, mixed prompt lengths, greedy and
sampled, two families), left-padded decoding equals stock ``generate``, per-row EOS, and the LM head runs on
the last position only."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_model
from test_probes_prefill import PREFIXED

from prunescope.adapter import model_parts
from prunescope.probes.decoding import DecodingSettings, decode, decode_batch, prompt_seed
from prunescope.probes.generation import dense_trajectories, variant_records
from prunescope.probes.layerwise import layerwise_probe
from prunescope.probes.subspace import subspace_records
from prunescope.pruning import magnitude_mask

# Mixed lengths (3 to 12 tokens), so a batch of five pads every row but the longest.
PROMPTS = {
    "a": [5, 17, 33],
    "b": [8, 8, 40, 91, 3, 60, 12, 77, 19],
    "c": [44, 21, 9, 100, 7],
    "d": [6, 13, 81, 55, 2, 30, 64, 11, 90, 27, 15, 73],
    "e": [99, 50, 4, 38, 70, 26, 18],
}
FAMILIES = ("llama", "qwen2")
TOLERANCE = dict(rtol=1e-5, atol=1e-5)  # fp32: padded batched matmuls are not bitwise equal to unpadded ones


def settings(temperature, new_tokens=12, eos=()):
    return DecodingSettings(temperature=temperature, max_new_tokens=new_tokens, seed=3, eos_token_ids=eos)


def magnitude_pruned(model, sparsity=0.5):
    """A really pruned copy: every decoder linear with its smallest-|w| half zeroed (magnitude masks)."""
    variant = copy.deepcopy(model)
    with torch.no_grad():
        for layer in model_parts(variant).layers:
            for linear in layer.linears().values():
                linear.weight[magnitude_mask(linear.weight, sparsity)] = 0.0
    return variant


def stopping_eos(model, temperature, new_tokens=12, prompts=PROMPTS):
    """A token that some prompts' runs emit and others never do, so EOS stops only some rows."""
    free = decode(model, prompts, settings(temperature, new_tokens))
    runs = [d.tokens for d in free.values()]
    for token in runs[0] + runs[1] + runs[2]:
        if any(token not in run for run in runs) and any(token in run[:-1] for run in runs):
            return token
    pytest.fail("no token stops some rows but not all; pick other prompts")


def assert_same_vectors(a, b):
    torch.testing.assert_close(a, b, **TOLERANCE)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_decode_does_not_depend_on_the_batch(family, temperature):
    model = tiny_model(family)
    runs = {size: decode(model, PROMPTS, settings(temperature), batch_size=size, record_final_hidden=True)
            for size in (1, 2, 5)}
    for size in (2, 5):
        for prompt_id in PROMPTS:
            assert runs[size][prompt_id].tokens == runs[1][prompt_id].tokens
            assert_same_vectors(runs[size][prompt_id].final_hidden, runs[1][prompt_id].final_hidden)
    # Which prompts share a batch does not matter either: "d" alone with "a", or with every other prompt.
    pair = decode(model, {"a": PROMPTS["a"], "d": PROMPTS["d"]}, settings(temperature), batch_size=2)
    assert pair["d"].tokens == runs[1]["d"].tokens
    if temperature > 0:  # each prompt has its own stream: the same prompt under another id samples otherwise
        renamed = decode(model, {"d2": PROMPTS["d"]}, settings(temperature))["d2"].tokens
        assert renamed != runs[1]["d"].tokens


def left_padded(prompts, pad=0):
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask, width


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_left_padded_batch_equals_stock_generate(family):
    model = tiny_model(family)
    n = 12
    ids, mask, width = left_padded(list(PROMPTS.values()))
    with torch.no_grad():
        batched = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=n, eos_token_id=None,
                                 pad_token_id=0)
    mine = decode(model, PROMPTS, settings(0.0, n), batch_size=5)
    for row, (prompt_id, prompt) in enumerate(PROMPTS.items()):
        alone = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                               do_sample=False, max_new_tokens=n, eos_token_id=None)
        assert batched[row, width:].tolist() == alone[0, len(prompt):].tolist()
        assert mine[prompt_id].tokens == alone[0, len(prompt):].tolist()


def positions_seen(model, run):
    """The position ids every forward of ``run()`` hands the rotary embedding."""
    seen = []

    def grab(_module, args, kwargs):
        seen.append((kwargs["position_ids"] if "position_ids" in kwargs else args[1]).clone())

    handle = model.model.rotary_emb.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("family", FAMILIES)
def test_positions_are_those_generate_passes_for_left_padding(family):
    """RoPE scores depend on relative positions only, so wrong absolute positions (transformers 5 derives
    them from the cache length) would shift every padded row yet change its vectors only at rounding level;
    check the positions themselves against stock ``generate``."""
    model = tiny_model(family)
    prompts = list(PROMPTS.values())
    ids, mask, _ = left_padded(prompts)
    stock = positions_seen(model, lambda: model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=4,
                                                         eos_token_id=None, pad_token_id=0))
    mine = positions_seen(model, lambda: decode_batch(model, prompts, settings(0.0, 4)))
    assert len(mine) == len(stock) == 4
    for a, b in zip(mine, stock):
        assert torch.equal(a, b)
    assert mine[0][0].tolist() == [0] * 9 + [0, 1, 2]  # prompt "a": 9 pads, then positions from 0
    assert mine[1][:, -1].tolist() == [len(p) for p in prompts]


@pytest.mark.parametrize("family", FAMILIES)
def test_sampled_batch_equals_stock_generate_per_prompt_stream(family):
    model = tiny_model(family)
    mine = decode(model, PROMPTS, settings(1.0), batch_size=5)
    for prompt_id, prompt in PROMPTS.items():
        torch.manual_seed(prompt_seed(3, prompt_id))
        alone = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                               do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=12,
                               eos_token_id=None)
        assert mine[prompt_id].tokens == alone[0, len(prompt):].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_row_stops_at_its_own_eos_like_generate(family):
    model = tiny_model(family)
    n = 12
    eos = stopping_eos(model, 0.0, n)
    free = decode(model, PROMPTS, settings(0.0, n))
    stopped = decode(model, PROMPTS, settings(0.0, n, eos=(eos,)), batch_size=5)
    ids, mask, width = left_padded(list(PROMPTS.values()))
    with torch.no_grad():
        stock = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=n, eos_token_id=eos,
                               pad_token_id=0)
    flags = []
    for row, prompt_id in enumerate(PROMPTS):
        tokens = free[prompt_id].tokens
        expected = tokens[: tokens.index(eos) + 1] if eos in tokens else tokens
        assert stopped[prompt_id].tokens == expected
        assert stopped[prompt_id].stopped_at_eos == (eos in tokens)
        assert stock[row, width : width + len(expected)].tolist() == expected  # generate pads after EOS
        flags.append(eos in tokens)
    assert any(flags) and not all(flags)
    # A row that stopped leaves the batch: later forwards run without it.
    seen = []
    decode_batch(model, list(PROMPTS.values()), settings(0.0, n, eos=(eos,)),
                 on_step=lambda step, out, tokens, rows: seen.append((rows, out.logits.shape[0])))
    for (rows, batch), step in zip(seen, range(n)):
        assert batch == len(rows)
        for row, prompt_id in enumerate(PROMPTS):
            assert (row in rows) == (step < len(stopped[prompt_id].tokens))


def by_key(records):
    return {(r["prompt_id"], r["step"], r["layer"], r["sublayer"]): r for r in records}


def assert_same_records(a, b):
    """Same keys, the same tokens exactly and the same vectors to fp32 tolerance."""
    a, b = by_key(a), by_key(b)
    assert a.keys() == b.keys()
    for key in a:
        for column in ("mode", "token_ref", "token_var"):
            assert a[key][column] == b[key][column], (key, column)
        for column in ("h_ref", "h_var"):
            if a[key][column] is None:
                assert b[key][column] is None
            else:
                assert_same_vectors(a[key][column], b[key][column])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_layerwise_drop_does_not_depend_on_the_batch(family, temperature):
    model = tiny_model(family)
    one = layerwise_probe(model, PROMPTS, settings(temperature))
    assert [r["prompt_id"] for r in one][:: 2 * 3 * 12] == list(PROMPTS)  # prompt order, whatever the batching
    for size in (2, 5):
        records = layerwise_probe(model, PROMPTS, settings(temperature), batch_size=size)
        assert [r["prompt_id"] for r in records] == [r["prompt_id"] for r in one]
        assert_same_records(one, records)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_layerwise_pruned_does_not_depend_on_the_batch(family, temperature):
    dense = tiny_model(family)
    variant = magnitude_pruned(dense)
    # An EOS that stops some rows early: the variant attention's own cache must drop the same rows.
    eos = (stopping_eos(dense, temperature),)
    one = layerwise_probe(dense, PROMPTS, settings(temperature, eos=eos), variant=variant)
    lengths = {r["prompt_id"]: r["step"] + 1 for r in one}
    assert len(set(lengths.values())) > 1  # rows really stopped at different steps
    assert any(not torch.equal(r["h_ref"], r["h_var"]) for r in one)  # the pruning changes the sublayers
    five = layerwise_probe(dense, PROMPTS, settings(temperature, eos=eos), variant=variant, batch_size=5)
    assert_same_records(one, five)


def test_layerwise_pruned_identical_variant_is_exact_in_a_batch():
    dense = tiny_model("qwen2")
    records = layerwise_probe(dense, PROMPTS, settings(1.0), variant=copy.deepcopy(dense), batch_size=5)
    assert all(torch.equal(r["h_ref"], r["h_var"]) for r in records)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_probe_does_not_depend_on_the_batch(family, temperature):
    dense = tiny_model(family)
    variant = magnitude_pruned(dense)
    eos = (stopping_eos(dense, temperature),)  # references of different lengths, rows of forced runs too
    run = settings(temperature, eos=eos)
    reference = {size: dense_trajectories(dense, PROMPTS, run, batch_size=size) for size in (1, 5)}
    assert len({len(t.tokens) for t in reference[1].values()}) > 1
    for prompt_id in PROMPTS:
        assert reference[5][prompt_id].tokens == reference[1][prompt_id].tokens
        assert_same_vectors(reference[5][prompt_id].hidden, reference[1][prompt_id].hidden)
    for mode in ("free", "forced"):
        one = variant_records(variant, PROMPTS, run, reference[1], mode)
        five = variant_records(variant, PROMPTS, run, reference[1], mode, batch_size=5)
        assert [r["prompt_id"] for r in five] == [r["prompt_id"] for r in one]
        assert_same_records(one, five)
        if mode == "forced":
            for prompt_id in PROMPTS:
                assert [r["token_var"] for r in five if r["prompt_id"] == prompt_id] == reference[1][prompt_id].tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_subspace_does_not_depend_on_the_batch(family):
    dense = tiny_model(family)
    variant = magnitude_pruned(dense)
    options = {"a": [6, 7], "b": [6, 7, 8], "c": [10, 11, 12, 13], "d": [20, 21, 22, 23, 24], "e": [6, 9, 7]}
    forms = {prompt_id: ("A" if i % 2 else " A") for i, prompt_id in enumerate(PROMPTS)}
    one = subspace_records(dense, variant, PROMPTS, options, {"b": "C"}, option_forms=forms)
    five = subspace_records(dense, variant, PROMPTS, options, {"b": "C"}, batch_size=5, option_forms=forms)
    assert [r["prompt_id"] for r in five] == list(PROMPTS)
    for r1, r5 in zip(one, five):
        prompt_id = r1["prompt_id"]
        assert r5["option_tokens"] == options[prompt_id] and r5["option_form"] == forms[prompt_id]
        assert (r5["token_ref"], r5["token_var"], r5["answer"]) == (r1["token_ref"], r1["token_var"], r1["answer"])
        assert_same_vectors(r5["h_ref"], r1["h_ref"])
        assert_same_vectors(r5["h_var"], r1["h_var"])
        with torch.no_grad():  # independent: a stock unpadded forward of the prompt alone
            out = variant(torch.tensor([PROMPTS[prompt_id]]), output_hidden_states=True)
        assert_same_vectors(r5["h_var"], out.hidden_states[-1][0, -1])
        assert r5["token_var"] == int(out.logits[0, -1].argmax())
    assert [r["answer"] for r in five] == ["", "C", "", "", ""]
    assert "option_form" not in subspace_records(dense, variant, {"a": PROMPTS["a"]}, options)[0]
    with pytest.raises(ValueError, match=r"no option token ids for prompts \['e'\]"):
        subspace_records(dense, variant, PROMPTS, {k: v for k, v in options.items() if k != "e"})
    with pytest.raises(ValueError, match=r"prompt 'a': option token ids \[6, 6\] must be at least two distinct"):
        subspace_records(dense, variant, PROMPTS, {**options, "a": [6, 6]})


def test_the_lm_head_runs_on_the_last_position_only():
    model = tiny_model("llama")
    rows_in = []
    handle = model.lm_head.register_forward_hook(lambda m, args, out: rows_in.append(tuple(args[0].shape[:2])))
    try:
        decode(model, PROMPTS, settings(1.0, 4), batch_size=5)
        subspace_records(model, model, PROMPTS, [6, 7, 8, 9], batch_size=5)
    finally:
        handle.remove()
    assert rows_in[0] == (5, 1)  # the prefill of five padded prompts: one position each
    assert len(rows_in) == 4 + 2 and all(positions == 1 for _, positions in rows_in)


# The same checks on prompts whose prefill runs as several forwards (a shared header computed once, rows
# joining as their prompts start: tests/test_probes_prefill.py), where the variant attention's own cache
# must grow with the batch as well as shrink.


@pytest.mark.parametrize("family", FAMILIES)
def test_layerwise_pruned_with_a_segmented_prefill_does_not_depend_on_the_batch(family):
    dense = tiny_model(family)
    variant = magnitude_pruned(dense)
    eos = (stopping_eos(dense, 1.0, prompts=PREFIXED),)
    one = layerwise_probe(dense, PREFIXED, settings(1.0, eos=eos), variant=variant)
    five = layerwise_probe(dense, PREFIXED, settings(1.0, eos=eos), variant=variant, batch_size=5)
    lengths = {r["prompt_id"]: r["step"] + 1 for r in one}
    assert len(set(lengths.values())) > 1  # rows really stopped at different steps
    assert_same_records(one, five)
    identical = layerwise_probe(dense, PREFIXED, settings(1.0), variant=copy.deepcopy(dense), batch_size=5)
    assert all(torch.equal(r["h_ref"], r["h_var"]) for r in identical)


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_and_subspace_with_a_segmented_prefill_do_not_depend_on_the_batch(family):
    dense = tiny_model(family)
    variant = magnitude_pruned(dense)
    run = settings(1.0)
    reference = dense_trajectories(dense, PREFIXED, run)
    for mode in ("free", "forced"):
        one = variant_records(variant, PREFIXED, run, reference, mode)
        five = variant_records(variant, PREFIXED, run, reference, mode, batch_size=5)
        assert_same_records(one, five)
    # A variant equal to the dense model, run with the same batch size, reproduces the reference bit for bit.
    reference_five = dense_trajectories(dense, PREFIXED, run, batch_size=5)
    identical = variant_records(copy.deepcopy(dense), PREFIXED, run, reference_five, "free", batch_size=5)
    assert all(torch.equal(r["h_var"], reference_five[r["prompt_id"]].hidden[r["step"]]) for r in identical)
    five = subspace_records(dense, variant, PREFIXED, [6, 7, 8], batch_size=5)
    for r5 in five:
        with torch.no_grad():  # independent: a stock unpadded forward of the prompt alone
            out = variant(torch.tensor([PREFIXED[r5["prompt_id"]]]), output_hidden_states=True)
        assert_same_vectors(r5["h_var"], out.hidden_states[-1][0, -1])
        assert r5["token_var"] == int(out.logits[0, -1].argmax())
