"""Generation probe: dense vs variant decoding, per step (paper Figs 7, 12; App. E; notes section 8.3).

The dense model's trajectory (its tokens and its post-final-norm last-token hidden state at every step) is a
property of (model, prompt set, decoding settings), so it is computed once by :func:`dense_trajectories`
and stored once (``mode = 'reference'``); every variant is then compared against it by
:func:`variant_records`:

- ``free``: the variant decodes the same prompt with the same seed and settings, on its own tokens. Step t
  of both runs is compared even after the histories diverge (the paper's protocol);
- ``forced``: the variant is fed the dense tokens (teacher forcing), so step t sees the dense history and
  its error is the per-step error alone, without what the history accumulated (paper App. E).

Both modes run the same cached one-token-per-forward loop as the dense run, so a variant identical to the
dense model, run one mode at a time with the same ``batch_size``, reproduces the reference bit for bit; run
with both modes at once (one prefill per prompt for its two runs, as the workflow does), it reproduces the
tokens exactly and the vectors to fp32 tolerance (the decoding forwards have twice the rows). Every function takes
``batch_size`` prompts per forward (left padding, per-row stop, one random stream per prompt: see
:mod:`prunescope.probes.decoding`); tokens do not depend on it and vectors only to fp32 tolerance.

Rows (``sublayer = 'final'``, ``layer = -1``): reference rows carry ``h_ref`` and ``token_ref``; variant rows
carry ``h_var`` and ``token_var`` (the variant's choice in ``free`` mode, the fed dense token in ``forced``
mode) plus ``token_ref`` (the dense token at that step, -1 past the end of the dense run). ``h_ref`` is not
repeated in variant rows: join them to the reference on ``(model, probe_set, prompt_id, step)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from prunescope.probes.decoding import (
    Decoded,
    DecodingSettings,
    batches,
    decode,
    decode_batch,
    prompt_seed,
    require_every_prompt,
)

GENERATION_MODES = ("free", "forced")


@dataclass(frozen=True)
class Trajectory:
    """One model's decoding of one prompt: chosen tokens and the final hidden state that chose each."""

    prompt_id: str
    tokens: list[int]
    hidden: torch.Tensor  # (steps, hidden) fp32 on CPU, after the final norm, at the last position


def dense_trajectories(
    dense, prompts: Mapping[str, Sequence[int] | torch.Tensor], settings: DecodingSettings, *, batch_size: int = 1
) -> dict[str, Trajectory]:
    """Decode every prompt with the dense model once; the reference every variant is compared with."""
    decoded = decode(dense, prompts, settings, batch_size=batch_size, record_final_hidden=True)
    return {prompt_id: Trajectory(prompt_id, d.tokens, d.final_hidden) for prompt_id, d in decoded.items()}


def reference_records(trajectories: Mapping[str, Trajectory]) -> list[dict]:
    """Rows of the dense reference table (``mode = 'reference'``)."""
    return [
        _row(prompt_id, step, "reference", token_ref=token, token_var=-1, h_ref=traj.hidden[step], h_var=None)
        for prompt_id, traj in trajectories.items()
        for step, token in enumerate(traj.tokens)
    ]


def variant_records(
    variant,
    prompts: Mapping[str, Sequence[int] | torch.Tensor],
    settings: DecodingSettings,
    reference: Mapping[str, Trajectory],
    mode: str | Sequence[str] = "free",
    *,
    batch_size: int = 1,
) -> list[dict]:
    """Decode every prompt with ``variant`` in ``mode`` (``free``, ``forced`` on the reference tokens, or
    a sequence of both) and record it: the rows of each mode in turn, in the order of ``prompts``.

    With both modes, each batch decodes a prompt's free and forced runs side by side from one prefill of
    the prompt (they differ from step 1 on), ``2 × batch_size`` rows per decoding forward.
    """
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    unknown = [m for m in modes if m not in GENERATION_MODES]
    if unknown or not modes or len(set(modes)) != len(modes):
        raise ValueError(f"generation probe mode {mode!r}: give one or more distinct modes of {GENERATION_MODES}")
    require_every_prompt(prompts, reference, "generation probe: no dense reference for prompts",
                         "; run dense_trajectories first")
    runs: dict[tuple[str, str], Decoded] = {}
    for ids in batches(prompts, batch_size):
        rows = [(m, prompt_id) for m in modes for prompt_id in ids]
        decoded = decode_batch(
            variant, [prompts[prompt_id] for _, prompt_id in rows], settings,
            seeds=[prompt_seed(settings.seed, prompt_id) for _, prompt_id in rows],
            forced_tokens=[reference[prompt_id].tokens if m == "forced" else None for m, prompt_id in rows],
            record_final_hidden=True,
        )
        runs.update(zip(rows, decoded))
    records = []
    for m in modes:
        for prompt_id in prompts:
            ref, run = reference[prompt_id], runs[(m, prompt_id)]
            for step, token in enumerate(run.tokens):
                token_ref = ref.tokens[step] if step < len(ref.tokens) else -1
                records.append(_row(prompt_id, step, m, token_ref=token_ref, token_var=token, h_ref=None,
                                    h_var=run.final_hidden[step]))
    return records


def _row(prompt_id, step, mode, *, token_ref, token_var, h_ref, h_var) -> dict:
    return {
        "prompt_id": prompt_id,
        "step": step,
        "layer": -1,
        "sublayer": "final",
        "mode": mode,
        "token_ref": token_ref,
        "token_var": token_var,
        "h_ref": h_ref,
        "h_var": h_var,
    }
