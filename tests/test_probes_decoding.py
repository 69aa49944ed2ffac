"""The probes' decoding loop against stock ``model.generate`` (tiny random-init models, all families)."""

from __future__ import annotations

import pytest
import torch

from prunescope.probes.decoding import DecodingSettings, decode, decode_batch, prompt_seed
from conftest import tiny_model

PROMPT = [5, 17, 33, 9, 71, 4]
ID = "p"  # the prompt's id keys its random stream


def run(model, settings, **kwargs):
    """The probe loop on the one prompt."""
    return decode(model, {ID: PROMPT}, settings, **kwargs)[ID]


def stock_generate(model, settings: DecodingSettings, eos=None, **extra):
    """``torch.manual_seed(prompt_seed(seed, id)); model.generate(...)`` with the probe's settings."""
    torch.manual_seed(prompt_seed(settings.seed, ID))
    sampling = (
        dict(do_sample=True, temperature=settings.temperature, top_k=0, top_p=1.0)
        if settings.temperature > 0
        else dict(do_sample=False)
    )
    out = model.generate(
        torch.tensor([PROMPT]), max_new_tokens=settings.max_new_tokens, eos_token_id=eos, **sampling, **extra
    )
    return out


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0, 1.3])
def test_tokens_equal_stock_generate(family, temperature):
    model = tiny_model(family)
    for seed in (0, 7):
        settings = DecodingSettings(temperature=temperature, max_new_tokens=24, seed=seed, eos_token_ids=())
        expected = stock_generate(model, settings)[0, len(PROMPT):].tolist()
        decoded = run(model, settings)
        assert decoded.tokens == expected
        assert len(decoded.tokens) == 24 and not decoded.stopped_at_eos
    if temperature > 0:  # sampling must actually depend on the seed, or the comparison above proves little
        a = run(model, DecodingSettings(temperature, 24, seed=0, eos_token_ids=())).tokens
        b = run(model, DecodingSettings(temperature, 24, seed=7, eos_token_ids=())).tokens
        assert a != b


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stops_after_eos_like_generate(temperature):
    model = tiny_model("llama")
    free = DecodingSettings(temperature=temperature, max_new_tokens=30, seed=3, eos_token_ids=())
    tokens = run(model, free).tokens
    eos = tokens[6]  # a token the run really produces; it must stop at its first occurrence
    first = tokens.index(eos)
    settings = DecodingSettings(temperature=temperature, max_new_tokens=30, seed=3, eos_token_ids=(eos,))
    decoded = run(model, settings)
    assert decoded.tokens == tokens[: first + 1]
    assert decoded.stopped_at_eos
    assert decoded.tokens == stock_generate(model, settings, eos=eos)[0, len(PROMPT):].tolist()


def test_default_eos_comes_from_generation_config():
    model = tiny_model("llama")
    settings = DecodingSettings(temperature=0.0, max_new_tokens=30, seed=0, eos_token_ids=())
    first = run(model, settings).tokens[0]
    model.generation_config.eos_token_id = [first, 99]
    decoded = run(model, DecodingSettings(temperature=0.0, max_new_tokens=30, seed=0, eos_token_ids=None))
    assert decoded.tokens == [first] and decoded.stopped_at_eos


def test_final_hidden_equals_generate_hidden_states(family):
    model = tiny_model(family)
    settings = DecodingSettings(temperature=1.0, max_new_tokens=10, seed=1, eos_token_ids=())
    decoded = run(model, settings, record_final_hidden=True)
    out = stock_generate(model, settings, output_hidden_states=True, return_dict_in_generate=True)
    assert decoded.tokens == out.sequences[0, len(PROMPT):].tolist()
    # generate's hidden_states[step][-1] is the final norm's output (post-norm), position -1 chose the token.
    expected = torch.stack([step_states[-1][0, -1] for step_states in out.hidden_states])
    assert decoded.final_hidden.shape == (10, model.config.hidden_size)
    assert torch.equal(decoded.final_hidden, expected)


def test_forced_tokens_follow_the_given_sequence():
    model = tiny_model("qwen2")
    settings = DecodingSettings(temperature=1.0, max_new_tokens=8, seed=2, eos_token_ids=())
    free = run(model, settings, record_final_hidden=True)
    forced_seq = [3, 3, 2, 90, 11]  # includes the model's EOS id: forcing never stops early
    forced = run(model, settings, forced_tokens={ID: forced_seq}, record_final_hidden=True)
    assert forced.tokens == forced_seq
    # Forcing the model's own choices reproduces its free run exactly (same calls, same cache).
    own = run(model, settings, forced_tokens={ID: free.tokens}, record_final_hidden=True)
    assert torch.equal(own.final_hidden, free.final_hidden)
    # Step t of the forced run sees prompt + forced[:t]: compare with an uncached forward over that sequence.
    full = torch.tensor([PROMPT + forced_seq[:-1]])
    hidden = model(full, output_hidden_states=True).hidden_states[-1][0]
    torch.testing.assert_close(forced.final_hidden, hidden[len(PROMPT) - 1 :], rtol=1e-5, atol=1e-5)


def test_global_rng_untouched_and_step_hook_order():
    model = tiny_model("llama")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    seen = []
    settings = DecodingSettings(temperature=1.0, max_new_tokens=5, seed=0, eos_token_ids=())
    (decoded,) = decode_batch(model, [PROMPT], settings, seeds=[prompt_seed(settings.seed, ID)],
                              on_step=lambda step, out, tokens, rows: seen.append((step, tokens[0], rows)))
    assert torch.equal(torch.get_rng_state(), before)
    assert seen == [(step, token, [0]) for step, token in enumerate(decoded.tokens)]
    assert decoded.tokens == run(model, settings).tokens
    assert torch.equal(torch.get_rng_state(), before)


def test_prompt_seed_is_a_stable_hash_of_seed_and_id():
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"42/gsm8k/12").digest()[:8], "little") >> 1
    assert prompt_seed(42, "gsm8k/12") == expected
    assert len({prompt_seed(0, "a"), prompt_seed(1, "a"), prompt_seed(0, "b")}) == 3


def test_bad_settings_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="temperature"):
        DecodingSettings(temperature=-1.0, max_new_tokens=4, seed=0, eos_token_ids=None)
    with pytest.raises(ValueError, match="max_new_tokens"):
        DecodingSettings(temperature=1.0, max_new_tokens=0, seed=0, eos_token_ids=None)
    with pytest.raises(TypeError):  # no defaults: the config schema is the one source of them
        DecodingSettings(temperature=1.0)
    settings = DecodingSettings(temperature=1.0, max_new_tokens=4, seed=0, eos_token_ids=None)
    with pytest.raises(ValueError, match="one non-empty sequence"):
        decode(tiny_model("llama"), {"x": [[1, 2], [3, 4]]}, settings)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        decode(tiny_model("llama"), {"x": PROMPT}, settings, batch_size=0)


def test_free_and_forced_rows_of_one_prompt_in_one_batch():
    """A forced row ignores EOS and follows its tokens; the free row of the same prompt samples and stops."""
    model = tiny_model("llama")
    settings = DecodingSettings(temperature=1.0, max_new_tokens=6, seed=0, eos_token_ids=())
    (free,) = decode_batch(model, [PROMPT], settings, seeds=[prompt_seed(0, ID)], record_final_hidden=True)
    eos = free.tokens[2]
    stopping = DecodingSettings(temperature=1.0, max_new_tokens=6, seed=0, eos_token_ids=(eos,))
    forced_seq = [eos, eos, 7, eos]
    row_free, row_forced = decode_batch(model, [PROMPT, PROMPT], stopping, seeds=[prompt_seed(0, ID)] * 2,
                                        forced_tokens=[None, forced_seq], record_final_hidden=True)
    stop = free.tokens.index(eos) + 1
    assert row_free.tokens == free.tokens[:stop] and row_free.stopped_at_eos
    torch.testing.assert_close(row_free.final_hidden, free.final_hidden[:stop], rtol=1e-5, atol=1e-5)
    assert row_forced.tokens == forced_seq and not row_forced.stopped_at_eos
    assert torch.equal(row_forced.final_hidden[0], row_free.final_hidden[0])  # one prefill for both rows
    with pytest.raises(ValueError, match="needs distinct prompts"):
        decode_batch(model, [PROMPT, PROMPT], settings, seeds=[1, 2], on_step=lambda *a: None)
