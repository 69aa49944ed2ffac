"""Categorical-subspace probe (paper Fig 8; notes section 8.4).

One forward pass over each multiple-choice prompt, for the dense model and for the variant (a batch of
prompts at a time, its padding and shared prefix skipped: :mod:`prunescope.probes.prefill`; the LM head on
the last position only); the probe keeps the
post-final-norm hidden state at the answer position (the last prompt token), from which the metrics stage
derives the full-vocabulary and the option-subspace distributions, and the token ids of the prompt's
options that span the subspace.

The dense side is the same for every variant: the workflow computes it once
(:func:`subspace_reference_records`: ``mode = 'reference'``, ``h_var`` null, in ``results/{model}/dense/probes/``)
and each variant's job reads it back (:func:`read_reference`) and runs only the variant's forward.

Which token is "the option letter" of a prompt (``"A"`` after a chat template's assistant header, ``" A"``
after ``Answer:``) is read off each rendered prompt by :mod:`prunescope.probes.options` when the prompt-set
file is written; this module takes those ids per prompt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import pyarrow.parquet as pq
import torch

from prunescope.probes.decoding import (
    as_token_list,
    batches,
    cached_forward,
    capture_final_hidden,
    require_every_prompt,
)
from prunescope.probes.prefill import prefill


@torch.no_grad()
def final_states(model, batch: Sequence[Sequence[int] | torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Post-final-norm hidden states at the last position (rows, hidden; fp32, CPU) of a batch, and each
    row's greedy next token: the prefill of :mod:`prunescope.probes.prefill` (one left-padded forward, or
    a few that skip the padding and the shared prefix), the LM head on the last position only."""
    with capture_final_hidden(model) as captured:
        output, _, _, _ = prefill(model, [as_token_list(ids) for ids in batch], cached_forward(model))
    return captured[-1].float().cpu(), torch.argmax(output.logits[:, -1], dim=-1).tolist()


class FinalState(NamedTuple):
    """One model's state at a prompt's answer position: the hidden vector and its greedy next token."""

    hidden: torch.Tensor
    token: int


def model_states(model, prompts: Mapping[str, Sequence[int] | torch.Tensor], batch_size: int = 1
                 ) -> dict[str, FinalState]:  # fmt: skip
    """:class:`FinalState` of ``model`` for every prompt, ``batch_size`` prompts at a time;
    the states do not depend on the batch (to fp32 tolerance)."""
    states = {}
    for ids in batches(prompts, batch_size):
        hidden, tokens = final_states(model, [prompts[i] for i in ids])
        states.update({prompt_id: FinalState(hidden[j], tokens[j]) for j, prompt_id in enumerate(ids)})
    return states


def subspace_reference_records(
    dense,
    prompts: Mapping[str, Sequence[int] | torch.Tensor],
    option_ids: Mapping[str, Sequence[int]] | Sequence[int],
    answers: Mapping[str, str] | None = None,
    *,
    batch_size: int = 1,
    option_forms: Mapping[str, str] | None = None,
) -> list[dict]:
    """The dense reference table's rows (``mode = 'reference'``): ``h_ref`` and ``token_ref`` per prompt,
    ``h_var`` None and ``token_var`` −1; option columns as in :func:`subspace_records`."""
    per_prompt = _checked_options(prompts, option_ids, option_forms, dense.config.vocab_size)
    states = model_states(dense, prompts, batch_size)
    return [_row(prompt_id, "reference", states[prompt_id], None, per_prompt, answers, option_forms)
            for prompt_id in prompts]


def read_reference(path: str | os.PathLike) -> dict[str, FinalState]:
    """The dense :class:`FinalState` of every prompt of a reference table (:func:`subspace_reference_records`)."""
    table = pq.read_table(path, columns=["prompt_id", "mode", "token_ref", "h_ref"])
    modes = set(table["mode"].to_pylist())
    if modes != {"reference"}:
        raise ValueError(f"{path}: not a dense subspace reference table (modes {sorted(modes)})")
    hidden = torch.tensor(table["h_ref"].combine_chunks().flatten().to_numpy(zero_copy_only=False),
                          dtype=torch.float32).reshape(table.num_rows, -1)
    return {prompt_id: FinalState(hidden[i], int(token))
            for i, (prompt_id, token) in enumerate(zip(table["prompt_id"].to_pylist(), table["token_ref"].to_pylist()))}


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

    ``dense`` is the dense model, or its states already computed (:func:`model_states`, or
    :func:`read_reference` of the stored reference table), which then need not be computed again.
    ``option_ids[prompt_id]`` are that prompt's option token ids (the subspace; 2 or more distinct ids of the
    vocabulary); one plain sequence stands for the same ids on every prompt. ``token_ref``/``token_var``
    hold each model's greedy next token over the full vocabulary; ``option_tokens`` the prompt's subspace
    ids; ``answer`` the gold letter where known (``""`` otherwise); ``option_form`` the prompt's form of the
    option tokens when ``option_forms`` is given. ``batch_size`` prompts run at a time; the
    rows do not depend on it (to fp32 tolerance).
    """
    per_prompt = _checked_options(prompts, option_ids, option_forms, variant.config.vocab_size)
    if isinstance(dense, Mapping):
        require_every_prompt(prompts, dense, "subspace probe: the dense reference has no state for prompts")
        reference = dense
    else:
        reference = model_states(dense, prompts, batch_size)
    states = model_states(variant, prompts, batch_size)
    return [_row(prompt_id, "forward", reference[prompt_id], states[prompt_id], per_prompt, answers, option_forms)
            for prompt_id in prompts]


def _row(prompt_id, mode, ref: FinalState, var: FinalState | None, per_prompt, answers, option_forms) -> dict:
    row = {
        "prompt_id": prompt_id,
        "step": 0,
        "layer": -1,
        "sublayer": "final",
        "mode": mode,
        "token_ref": ref.token,
        "token_var": -1 if var is None else var.token,
        "h_ref": ref.hidden,
        "h_var": None if var is None else var.hidden,
        "option_tokens": per_prompt[prompt_id],
        "answer": (answers or {}).get(prompt_id, ""),
    }
    if option_forms is not None:
        row["option_form"] = option_forms[prompt_id]
    return row


def _checked_options(prompts, option_ids, option_forms, vocab: int) -> dict[str, list[int]]:
    per_prompt = _options_per_prompt(prompts, option_ids, vocab)
    if option_forms is not None:
        require_every_prompt(prompts, option_forms, "subspace probe: option_forms has no entry for prompts")
    return per_prompt


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
