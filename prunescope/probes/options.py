"""Option tokens of a multiple-choice prompt: the ids that span the categorical subspace (paper Fig 8).

The subspace probe compares dense and variant distributions over "the option letters". Which token is the
option letter depends on where the model is asked to answer: after ``Answer:`` a tokenizer's natural next
token is the letter with a leading space (``" A"``), while after a chat template's assistant header
(``<|im_start|>assistant\\n``) it is the bare letter (``"A"``), a different id. Taking the wrong form
measures tokens deep in the tail of the distribution.

So the ids are read off the exact text the model sees. For a rendered prompt ``r`` (chat template applied
or raw) and a form (``bare``: ``"A"``, ``spaced``: ``" A"``), the form is *usable* when, for every option
letter, ``encode(r + form(letter))`` is ``encode(r)`` plus exactly one token, the letters' tokens are
distinct, and none is the unknown token. The form is chosen per prompt:

1. the *preferred* form follows how the rendered prompt ends: after whitespace (a newline, the assistant
   header) the bare letter, since a space after a line break is not how an answer starts; after anything
   else (``Answer:``, ``[/INST]``) the spaced letter, as in running text;
2. if the preferred form is not usable on this tokenizer (a letter merges with the preceding text, or
   splits into several tokens), the other form is taken if it is usable;
3. if neither is, a ``ValueError`` names the prompt's end, the letter and its tokenization.

The chosen form is recorded per prompt (``option_form``) so a reader can see which tokens were measured.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

FORMS = {"bare": "{letter}", "spaced": " {letter}"}
LETTERS = tuple(string.ascii_uppercase)
MAX_OPTIONS = 26


@dataclass(frozen=True)
class OptionTokens:
    """The option letters of one prompt, their token ids (in letter order) and the form chosen."""

    letters: tuple[str, ...]
    ids: tuple[int, ...]
    form: str


def option_letters(n_options: int) -> tuple[str, ...]:
    """``A``, ``B``, ... for ``n_options`` options (at least 2)."""
    if not (isinstance(n_options, int) and 2 <= n_options <= MAX_OPTIONS):
        raise ValueError(f"a multiple-choice item needs 2 to {MAX_OPTIONS} options, got {n_options!r}")
    return LETTERS[:n_options]


def preferred_forms(rendered: str) -> tuple[str, str]:
    """The forms to try, most natural first, from how the rendered prompt ends (see the module doc)."""
    return ("bare", "spaced") if rendered[-1:].isspace() else ("spaced", "bare")


def option_token_ids(
    tokenizer, rendered: str, letters: Sequence[str], add_special_tokens: bool = False
) -> OptionTokens:
    """The id of each letter appended at the answer position of ``rendered``, in the chosen form.

    ``rendered`` is the text the model sees (chat template already applied, special tokens as text) and
    ``add_special_tokens`` how it is tokenized, exactly as :func:`prunescope.probes.prompts.render_prompt`
    does, so ``encode(rendered)`` is the probe's input. Raises ``ValueError`` when no form is usable.
    """
    letters = tuple(letters)
    if len(set(letters)) != len(letters):
        raise ValueError(f"option letters {list(letters)} are not distinct")
    prompt_ids = _encode(tokenizer, rendered, add_special_tokens)
    problems = []
    for form in preferred_forms(rendered):
        ids, problem = _form_ids(tokenizer, rendered, prompt_ids, letters, form, add_special_tokens)
        if problem is None:
            return OptionTokens(letters, ids, form)
        problems.append(f"{form}: {problem}")
    raise ValueError(
        f"no option-letter form is a single token at the answer position of the prompt ending "
        f"{rendered[-40:]!r}: " + "; ".join(problems) + "; the subspace probe needs one token per option"
    )


def _form_ids(tokenizer, rendered, prompt_ids, letters, form, add_special_tokens):
    """(ids, None) if ``form`` is usable after ``rendered``, else ((), what is wrong)."""
    ids = []
    unk = getattr(tokenizer, "unk_token_id", None)
    for letter in letters:
        piece = FORMS[form].format(letter=letter)
        full = _encode(tokenizer, rendered + piece, add_special_tokens)
        if full[: len(prompt_ids)] != prompt_ids or len(full) != len(prompt_ids) + 1:
            return (), (f"{piece!r} turns the prompt's last token {prompt_ids[-1:]} into "
                        f"{full[max(len(prompt_ids) - 1, 0):]}, not one added token")
        if full[-1] == unk:
            return (), f"{piece!r} is the unknown token {unk}"
        ids.append(full[-1])
    if len(set(ids)) != len(ids):
        return (), f"letters {list(letters)} share token ids {ids}"
    return tuple(ids), None


def _encode(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]]
