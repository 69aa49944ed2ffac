"""The prefill that skips padding and the shared prefix: its plan (hand-worked), its grid, the forwards the
probes really make, and results equal to each prompt run alone (eager and sdpa attention, a sliding
window); the probes' own batch tests run on these prompts too (tests/test_probes_batch.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config, tiny_model

from prunescope.probes.decoding import DecodingSettings, decode, decode_batch
from prunescope.probes.prefill import Segment, common_prefix, grid, plan_prefill, prefill, sliding_window

# A 16-token header shared by every prompt (as a chat template's), then rests of 2, 9, 24, 41 and 58 tokens.
HEADER = [1, 9, 23, 4, 57, 12, 88, 30, 5, 61, 17, 2, 44, 70, 8, 3]
REST_LENGTHS = (2, 9, 24, 41, 58)
PREFIXED = {f"p{n}": HEADER + [(7 * n + 11 * k) % 120 + 5 for k in range(n)] for n in REST_LENGTHS}


def test_common_prefix():
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[5, 6], [7, 6]]) == 0
    assert common_prefix([[4, 4, 4]]) == 3
    assert common_prefix(list(PREFIXED.values())) == 16


def test_plan_skips_the_padding_and_computes_the_header_once():
    """Hand-worked: the rests start at grid columns 72, 65, 50, 33 and 16 (grid width 74)."""
    plan = plan_prefill(list(PREFIXED.values()))
    assert plan.prefix == 16 and plan.width == 74
    assert [plan.first_column(row) for row in range(5)] == [72, 65, 50, 33, 16]
    # At 33 the four rows not yet started would pad 4 x 17 = 68 >= 32 tokens: cut. At 50, 3 x 17 = 51: cut.
    # At 65, 2 x 15 = 30 < 32 and at 72, 1 x 22 = 22: no cut, those rows pad inside the last segment.
    assert plan.segments == (Segment(0, 16, (0,)), Segment(16, 33, (4,)), Segment(33, 50, (3, 4)),
                             Segment(50, 74, (0, 1, 2, 3, 4)))
    assert plan.computed_tokens() == 16 + 17 + 2 * 17 + 5 * 24  # 187, against 5 x 74 = 370 in one forward
    # A lower threshold cuts at every start; a single prompt, or no header, gives fewer forwards.
    assert [s.start for s in plan_prefill(list(PREFIXED.values()), min_skipped=1).segments] == [0, 16, 33, 50, 65, 72]
    assert plan_prefill([PREFIXED["p58"]]).segments == (Segment(0, 74, (0,)),)
    unshared = plan_prefill(list(PREFIXED.values()), share_prefix=False)
    assert unshared.prefix == 0  # the same cuts, 16 columns to the left (the header is every row's own now)
    assert unshared.segments == (Segment(0, 17, (4,)), Segment(17, 34, (3, 4)), Segment(34, 74, (0, 1, 2, 3, 4)))


def test_plan_keeps_one_forward_when_little_is_padded():
    prompts = [[3, 4, 5, 6, 7, 8], [9, 4, 5, 6, 7], [5, 6, 7, 8]]
    assert plan_prefill(prompts).segments == (Segment(0, 6, (0, 1, 2)),)
    with pytest.raises(ValueError, match="no empty prompt"):
        plan_prefill([[1], []])


def test_grid_puts_the_header_first_and_each_rest_right_aligned():
    prompts = [[1, 2, 3, 9], [1, 2, 3, 7, 7, 7]]
    plan = plan_prefill(prompts, min_skipped=1)
    assert plan.prefix == 3
    ids, mask, positions = grid(prompts, plan, "cpu")
    assert ids.tolist() == [[1, 2, 3, 0, 0, 9], [1, 2, 3, 7, 7, 7]]
    assert mask.tolist() == [[1, 1, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1]]
    assert positions.tolist() == [[0, 1, 2, 0, 0, 3], [0, 1, 2, 3, 4, 5]]  # each row's own positions
    no_header = plan_prefill(prompts, share_prefix=False)
    ids, mask, positions = grid(prompts, no_header, "cpu")
    assert ids.tolist() == [[0, 0, 1, 2, 3, 9], [1, 2, 3, 7, 7, 7]]  # plain left padding, as generate
    assert positions.tolist() == [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]


def test_sliding_window_of_a_config():
    assert sliding_window(tiny_config("llama")) is None
    assert sliding_window(tiny_config("qwen2")) is None  # use_sliding_window false, full-attention layers
    assert sliding_window(tiny_config("mistral", sliding_window=8)) == 8


def forward_shapes(model, run):
    """The input shape of every forward of ``run()``."""
    shapes = []
    handle = model.register_forward_pre_hook(lambda _m, _a, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                             with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return shapes


SETTINGS = DecodingSettings(temperature=1.0, max_new_tokens=3, seed=3, eos_token_ids=())


def test_decoding_runs_the_planned_forwards():
    model = tiny_model("llama")
    shapes = forward_shapes(model, lambda: decode_batch(model, list(PREFIXED.values()), SETTINGS,
                                                        seeds=[1, 2, 3, 4, 5]))
    assert shapes == [(1, 16), (1, 17), (2, 17), (5, 24), (5, 1), (5, 1)]


def attention_model(family, attention, **overrides):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(family, **overrides), attn_implementation=attention).eval()


@pytest.mark.parametrize(("family", "attention", "overrides"), [
    ("llama", "eager", {}), ("llama", "sdpa", {}), ("qwen3", "sdpa", {}), ("mistral", "sdpa", {"sliding_window": 20}),
])
def test_prefill_states_equal_each_prompt_alone(family, attention, overrides):
    model = attention_model(family, attention, **overrides)
    prompts = list(PREFIXED.values())

    def forward(input_ids, cache, mask, positions):
        kwargs = {"attention_mask": None if bool(mask.all()) else mask, "position_ids": positions}
        return model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1, **kwargs)

    grown = []
    with torch.no_grad():
        output, _, _, _ = prefill(model, prompts, forward, on_rows=grown.append, min_skipped=1)
        for row, prompt in enumerate(prompts):
            alone = model(torch.tensor([prompt])).logits[0, -1]
            torch.testing.assert_close(output.logits[row, -1], alone, rtol=1e-5, atol=1e-5)
    assert len(grown) >= 3  # the batch really grew between forwards
    # And decoding on from that cache: tokens equal to each prompt decoded alone, vectors to fp32 tolerance.
    settings = DecodingSettings(temperature=1.0, max_new_tokens=6, seed=3, eos_token_ids=())
    together = decode(model, PREFIXED, settings, batch_size=5, record_final_hidden=True)
    alone = decode(model, PREFIXED, settings, batch_size=1, record_final_hidden=True)
    for prompt_id in PREFIXED:
        assert together[prompt_id].tokens == alone[prompt_id].tokens
        torch.testing.assert_close(together[prompt_id].final_hidden, alone[prompt_id].final_hidden,
                                   rtol=1e-5, atol=1e-5)
