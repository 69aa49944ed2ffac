"""Categorical-subspace probe (paper Fig 8; notes section 8.4).

One forward pass over each multiple-choice prompt, for the dense model and for the variant (a batch of
left-padded prompts per forward, the LM head on the last position only); the probe keeps the
post-final-norm hidden state at the answer position (the last prompt token), from which the metrics stage
derives the full-vocabulary and the option-subspace distributions, and the token ids of the prompt's
options that span the subspace.

Which token is "the option letter" of a prompt (``"A"`` after a chat template's assistant header, ``" A"``
after ``Answer:``) is read off each rendered prompt by :mod:`prunescope.probes.options` when the prompt-set
file is written; this module takes those ids per prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from prunescope.probes.decoding import (
    as_token_list,
    batches,
    capture_final_hidden,
    forward_kwargs,
    left_pad,
    require_every_prompt,
)


@torch.no_grad()
def final_states(model, batch: Sequence[Sequence[int] | torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Post-final-norm hidden states at the last position (rows, hidden; fp32, CPU) of a left-padded batch,
    and each row's greedy next token. One forward, no cache, the LM head on the last position only."""
    device = next(model.parameters()).device
    input_ids, mask, positions = left_pad([as_token_list(ids) for ids in batch], device)
    with capture_final_hidden(model) as captured:
        output = model(input_ids=input_ids, use_cache=False, **forward_kwargs(model, mask, positions))
    return captured[0].float().cpu(), torch.argmax(output.logits[:, -1], dim=-1).tolist()


def subspace_records(
    dense,
    variant,
    prompts: Mapping[str, Sequence[int] | torch.Tensor],
    option_ids: Mapping[str, Sequence[int]] | Sequence[int],
    answers: Mapping[str, str] | None = None,
    *,
    batch_size: int = 1,
    option_forms: Mapping[str, str] | None = None,
) -> list[dict]:
    """One row per prompt: ``h_ref`` (dense) and ``h_var`` (variant) at the answer position.

    ``option_ids[prompt_id]`` are that prompt's option token ids (the subspace; 2 or more distinct ids of the
    vocabulary); one plain sequence stands for the same ids on every prompt. ``token_ref``/``token_var``
    hold each model's greedy next token over the full vocabulary; ``option_tokens`` the prompt's subspace
    ids; ``answer`` the gold letter where known (``""`` otherwise); ``option_form`` the prompt's form of the
    option tokens when ``option_forms`` is given. ``batch_size`` prompts run per forward (left padding); the
    rows do not depend on it (to fp32 tolerance).
    """
    per_prompt = _options_per_prompt(prompts, option_ids, dense.config.vocab_size)
    if option_forms is not None:
        require_every_prompt(prompts, option_forms, "subspace probe: option_forms has no entry for prompts")
    rows: dict[str, dict] = {}
    for ids in batches(prompts, batch_size):
        batch = [prompts[i] for i in ids]
        h_ref, tokens_ref = final_states(dense, batch)
        h_var, tokens_var = final_states(variant, batch)
        for j, prompt_id in enumerate(ids):
            rows[prompt_id] = {
                "prompt_id": prompt_id,
                "step": 0,
                "layer": -1,
                "sublayer": "final",
                "mode": "forward",
                "token_ref": tokens_ref[j],
                "token_var": tokens_var[j],
                "h_ref": h_ref[j],
                "h_var": h_var[j],
                "option_tokens": per_prompt[prompt_id],
                "answer": (answers or {}).get(prompt_id, ""),
            }
            if option_forms is not None:
                rows[prompt_id]["option_form"] = option_forms[prompt_id]
    return [rows[prompt_id] for prompt_id in prompts]


def _options_per_prompt(prompts, option_ids, vocab: int) -> dict[str, list[int]]:
    """Each prompt's option ids as ints, checked: present, at least two, distinct, inside the vocabulary."""
    if isinstance(option_ids, Mapping):
        require_every_prompt(prompts, option_ids, "subspace probe: no option token ids for prompts")
        per_prompt = {prompt_id: [int(i) for i in option_ids[prompt_id]] for prompt_id in prompts}
    else:
        shared = [int(i) for i in option_ids]
        per_prompt = {prompt_id: list(shared) for prompt_id in prompts}
    for prompt_id, ids in per_prompt.items():
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"subspace probe: prompt {prompt_id!r}: option token ids {bad} are outside the "
                             f"vocabulary (size {vocab})")
        if len(ids) < 2 or len(set(ids)) != len(ids):
            raise ValueError(f"subspace probe: prompt {prompt_id!r}: option token ids {ids} must be at least two "
                             "distinct ids")
    return per_prompt
