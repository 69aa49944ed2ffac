"""Categorical-subspace probe (paper Fig 8; notes section 8.4).

One forward pass over each multiple-choice prompt, for the dense model and for the variant; the probe keeps
the post-final-norm hidden state at the answer position (the last prompt token), from which the metrics
stage derives the full-vocabulary and the option-subspace distributions, and the token ids of the option
letters that span the subspace.

Which token is "the option letter" matters: after ``Answer:`` the natural next token of most tokenizers is
the letter with a leading space (``" A"``), a different id from ``"A"``. :func:`option_token_ids` reads the
ids off the tokenizer in that context and reports which form they are; each letter must be exactly one
token, distinct from the others and not the unknown token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from prunescope.probes.decoding import as_input_ids, capture_final_hidden

OPTION_LETTERS = ("A", "B", "C", "D")
ANSWER_CUE = "Answer:"


def option_token_ids(
    tokenizer, letters: Sequence[str] = OPTION_LETTERS, cue: str = ANSWER_CUE
) -> tuple[list[int], str]:
    """The id of each letter as the next token after ``cue``, and its form (``" A"``, ``"A"`` or the text).

    Raises ``ValueError`` naming the letter and its tokenization when a letter is not one token after the
    cue, when two letters share an id, or when a letter maps to the unknown token.
    """
    cue_ids = _encode(tokenizer, cue)
    ids, forms = [], set()
    for letter in letters:
        full = _encode(tokenizer, f"{cue} {letter}")
        if full[: len(cue_ids)] != cue_ids or len(full) != len(cue_ids) + 1:
            raise ValueError(
                f"option letter {letter!r} is not a single token after {cue!r}: {cue!r} -> {cue_ids}, "
                f"{cue + ' ' + letter!r} -> {full}; the subspace probe needs one token per option"
            )
        token = full[-1]
        if token == getattr(tokenizer, "unk_token_id", None):
            raise ValueError(f"option letter {letter!r} maps to the unknown token {token} of this tokenizer")
        ids.append(token)
        forms.add(_form(tokenizer, letter, token))
    if len(set(ids)) != len(ids):
        raise ValueError(f"option letters {list(letters)} do not map to distinct tokens: {ids}")
    if len(forms) != 1:
        raise ValueError(f"option letters {list(letters)} tokenize in different forms after {cue!r}: {sorted(forms)}")
    return ids, forms.pop()


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _form(tokenizer, letter: str, token: int) -> str:
    """Which standalone spelling encodes to ``token``: the leading-space form is checked first."""
    for form, text in ((" A", " " + letter), ("A", letter)):
        if _encode(tokenizer, text) == [token]:
            return form
    return repr(tokenizer.decode([token]))


@torch.no_grad()
def final_state(model, input_ids: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, int]:
    """Post-final-norm hidden state at the last position (fp32, CPU) and the greedy next token."""
    ids = as_input_ids(input_ids, next(model.parameters()).device)
    with capture_final_hidden(model) as captured:
        output = model(input_ids=ids, use_cache=False)
    return captured[0].float().cpu(), int(torch.argmax(output.logits[0, -1]))


def subspace_records(
    dense,
    variant,
    prompts: Mapping[str, Sequence[int] | torch.Tensor],
    option_ids: Sequence[int],
    answers: Mapping[str, str] | None = None,
) -> list[dict]:
    """One row per prompt: ``h_ref`` (dense) and ``h_var`` (variant) at the answer position.

    ``token_ref``/``token_var`` hold each model's greedy next token over the full vocabulary; ``option_tokens``
    the subspace ids; ``answer`` the gold letter where known (``""`` otherwise).
    """
    vocab = dense.config.vocab_size
    bad = [i for i in option_ids if not 0 <= int(i) < vocab]
    if bad:
        raise ValueError(f"subspace probe: option token ids {bad} are outside the vocabulary (size {vocab})")
    records = []
    for prompt_id, input_ids in prompts.items():
        h_ref, token_ref = final_state(dense, input_ids)
        h_var, token_var = final_state(variant, input_ids)
        records.append(
            {
                "prompt_id": prompt_id,
                "step": 0,
                "layer": -1,
                "sublayer": "final",
                "mode": "forward",
                "token_ref": token_ref,
                "token_var": token_var,
                "h_ref": h_ref,
                "h_var": h_var,
                "option_tokens": [int(i) for i in option_ids],
                "answer": (answers or {}).get(prompt_id, ""),
            }
        )
    return records
