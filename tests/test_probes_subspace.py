"""Subspace probe and prompt rendering: a synthetic offline tokenizer, tiny models, and the embedded
SmolLM2 tokenizer when its converted checkpoint is present."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import tiny_model

from prunescope.probes.prompts import build_probe_set, render_prompt, tokenize_probe_set
from prunescope.probes.subspace import option_token_ids, subspace_records

WORDS = ["[UNK]", "<s>", "</s>", "Question", ":", "Answer", "A", "B", "C", "D", ")", "Which", "is", "red", "?"]
CHAT = "{% for m in messages %}<s> {{ m['content'] }} </s>{% endfor %}{% if add_generation_prompt %} Answer{% endif %}"
EMBEDDED = [Path("resources/models/smollm2-135m-instruct"), Path("/tmp/smollm2")]


@pytest.fixture(scope="module")
def word_tokenizer():
    """A WordLevel tokenizer over a 15-word vocabulary (ids fit the tiny models' 128-token vocab)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT
    return tokenizer


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    folder = next((p for p in EMBEDDED if (p / "tokenizer.json").is_file()), None)
    if folder is None:
        pytest.skip(f"embedded SmolLM2 checkpoint not converted yet (looked in {[str(p) for p in EMBEDDED]})")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def test_option_ids_from_a_word_tokenizer(word_tokenizer):
    ids, form = option_token_ids(word_tokenizer)
    assert ids == [WORDS.index(letter) for letter in "ABCD"]
    assert form == " A"


@pytest.mark.parametrize(
    "letters, message",
    [
        (("A", "B", "C", "D)"), "'D\\)' is not a single token after 'Answer:'"),
        (("A", "B", "C", "E"), "'E' maps to the unknown token 0"),
        (("A", "A", "B", "C"), "do not map to distinct tokens"),
    ],
)
def test_option_ids_errors_name_the_letter(word_tokenizer, letters, message):
    with pytest.raises(ValueError, match=message):
        option_token_ids(word_tokenizer, letters)


def test_render_prompt_plain_and_chat(word_tokenizer):
    assert render_prompt(word_tokenizer, "Which is red ?", chat_template=False) == [11, 12, 13, 14]
    assert render_prompt(word_tokenizer, "Which is red ?", chat_template=True) == [1, 11, 12, 13, 14, 2, 5]
    probe_set = [{"prompt_id": "x", "text": "Which is red ?"}, {"prompt_id": "y", "text": "Answer : A"}]
    assert tokenize_probe_set(word_tokenizer, probe_set, chat_template=False) == {"x": [11, 12, 13, 14], "y": [5, 4, 6]}
    no_template = copy.copy(word_tokenizer)
    no_template.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(no_template, "Which is red ?", chat_template=True)


def test_subspace_records_identical_variant(family, word_tokenizer):
    model = tiny_model(family)
    prompts = {"q1": [3, 4, 11, 12, 13, 14, 5, 4], "q2": [11, 13, 5, 4]}
    ids, _ = option_token_ids(word_tokenizer)
    rows = subspace_records(model, copy.deepcopy(model), prompts, ids, answers={"q1": "C"})
    assert [r["prompt_id"] for r in rows] == ["q1", "q2"]
    for r in rows:
        with torch.no_grad():
            out = model(torch.tensor([prompts[r["prompt_id"]]]), output_hidden_states=True)
        assert torch.equal(r["h_ref"], r["h_var"])
        assert torch.equal(r["h_ref"], out.hidden_states[-1][0, -1])  # post-final-norm, answer position
        assert r["token_ref"] == r["token_var"] == int(out.logits[0, -1].argmax())
        assert r["option_tokens"] == ids
        assert (r["step"], r["layer"], r["sublayer"], r["mode"]) == (0, -1, "final", "forward")
    assert [r["answer"] for r in rows] == ["C", ""]


def test_subspace_records_different_variant_and_bad_ids():
    dense, variant = tiny_model("mistral", seed=0), tiny_model("mistral", seed=3)
    prompt = [11, 12, 13, 14, 5, 4]
    (row,) = subspace_records(dense, variant, {"q": prompt}, [6, 7, 8, 9])
    with torch.no_grad():
        expected = variant(torch.tensor([prompt]), output_hidden_states=True).hidden_states[-1][0, -1]
    assert torch.equal(row["h_var"], expected) and not torch.equal(row["h_var"], row["h_ref"])
    with pytest.raises(ValueError, match=r"\[500\] are outside the vocabulary \(size 128\)"):
        subspace_records(dense, variant, {"q": prompt}, [6, 7, 8, 500])


def test_smollm2_option_letters_are_space_prefixed_single_tokens(smollm2_tokenizer):
    ids, form = option_token_ids(smollm2_tokenizer)
    assert form == " A"
    assert ids == [smollm2_tokenizer.encode(" " + letter, add_special_tokens=False)[0] for letter in "ABCD"]
    assert ids != [smollm2_tokenizer.encode(letter, add_special_tokens=False)[0] for letter in "ABCD"]
    # On real probe prompts the letter after "Answer:" is exactly one more token, the recorded id.
    for item in build_probe_set("multiple_choice", 3, seed=1):
        prompt = render_prompt(smollm2_tokenizer, item["text"], chat_template=False)
        full = render_prompt(smollm2_tokenizer, item["text"] + " " + item["answer"], chat_template=False)
        assert full == prompt + [ids["ABCD".index(item["answer"])]]


def test_smollm2_chat_template_prompt(smollm2_tokenizer):
    ids = render_prompt(smollm2_tokenizer, "Name a colour.", chat_template=True)
    text = smollm2_tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system") and "Name a colour." in text
    assert text.endswith("<|im_start|>assistant\n")
    plain = render_prompt(smollm2_tokenizer, "Name a colour.", chat_template=False)
    assert plain == smollm2_tokenizer.encode("Name a colour.")
