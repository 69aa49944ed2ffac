"""The prefill of a batch of prompts without computing its padding or repeating its shared prefix.

A left-padded batch costs rows × longest prompt in its prefill forward. Probe prompt sets are uneven (the
default multiple-choice set spans 60 to 257 tokens: half its padded grid is padding) and all start with the
same chat-template header. :func:`prefill` computes the same states in a few forwards over one grid:

- the prompts' **common prefix** (the chat header) once, on one row (not for models with a sliding
  attention window, which counts the padding after it);
- then the rest of every prompt, right-aligned after the prefix (padding sits between the prefix and a
  short row's own tokens), in **segments** of columns: a row joins the batch at the first segment that holds
  one of its tokens, so the columns where every remaining row is padding are never computed.

Between forwards the KV cache grows to the rows of the next one with ``Cache.batch_select_indices``: a row
already in the batch keeps its own keys and values, a joining row takes a copy of another row's. That copy
is exact for the shared prefix (every row has the same tokens there) and masked out everywhere else (the
columns before the joining row's first token are padding in its attention mask), so each row attends to
exactly its own prompt. Position ids are ``cumsum(mask) - 1`` as for any padded row, so rotary positions
are the unpadded ones. The last segment holds every row and ends at the last column, so its output (last
position) is the batch's step-0 output, as from one left-padded forward; states agree with it, and with
each prompt run alone, to fp32 tolerance (the matmuls have other shapes), and a batch of one is exactly the
single forward it was before.

Forward hooks see every forward; only the last one is a decoding step. A caller that keeps per-row state
beside the model's cache (the layer-wise probe's variant attention cache) passes ``on_rows`` and applies the
same ``batch_select_indices`` to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

PAD_ID = 0  # what fills padding; masked out, so any id of the vocabulary would do
# A separate forward only where it skips at least this many padded (or repeated prefix) tokens: below
# that, the forward's fixed cost (every layer's kernels launched once more) outweighs the tokens saved.
MIN_SKIPPED_TOKENS = 32


@dataclass(frozen=True)
class Segment:
    """Columns ``[start, end)`` of the grid, computed for ``rows`` (batch indices, ascending)."""

    start: int
    end: int
    rows: tuple[int, ...]


@dataclass(frozen=True)
class PrefillPlan:
    """The grid (``prefix`` shared columns, then each prompt's rest right-aligned) and its forwards."""

    prefix: int
    lengths: tuple[int, ...]
    segments: tuple[Segment, ...]

    @property
    def width(self) -> int:
        """Grid columns: the shared prefix, then the longest prompt's rest."""
        return max(self.lengths)

    def first_column(self, row: int) -> int:
        """The grid column of row ``row``'s first token after the prefix."""
        return self.width - (self.lengths[row] - self.prefix)

    def computed_tokens(self) -> int:
        """Row-columns the forwards compute (a single left-padded forward: rows × longest prompt)."""
        return sum(len(s.rows) * (s.end - s.start) for s in self.segments)


def common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix that every prompt starts with."""
    shortest = min(len(p) for p in prompts)
    for column in range(shortest):
        token = prompts[0][column]
        if any(p[column] != token for p in prompts):
            return column
    return shortest


def sliding_window(config) -> int | None:
    """The attention window of a model config, or None when every layer attends over the whole context."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and all(kind == "full_attention" for kind in layer_types):
        return None
    if getattr(config, "use_sliding_window", None) is False:
        return None
    return getattr(config, "sliding_window", None)


def plan_prefill(prompts: Sequence[Sequence[int]], min_skipped: int = MIN_SKIPPED_TOKENS, *,
                 share_prefix: bool = True) -> PrefillPlan:
    """Which forwards compute the prefill of ``prompts`` (lists of ids, batch order).

    The shared prefix gets its own one-row forward when ``share_prefix`` and it saves at least
    ``min_skipped`` tokens ((rows - 1) × prefix); it never takes a row's last token, so every row has a
    token in the last segment. After it, a new segment starts at a row's first column when the rows that
    have not started by then would otherwise compute at least ``min_skipped`` padded tokens since the current
    segment began.
    """
    lengths = tuple(len(p) for p in prompts)
    if not lengths or min(lengths) == 0:
        raise ValueError("prefill needs at least one prompt and no empty prompt")
    prefix = min(common_prefix(prompts), min(lengths) - 1) if share_prefix else 0
    if prefix * (len(prompts) - 1) < min_skipped:
        prefix = 0
    width = max(lengths)
    starts = [width - (n - prefix) for n in lengths]  # first grid column of each row's own tokens
    segments: list[Segment] = []
    if prefix:
        segments.append(Segment(0, prefix, (0,)))
    begin = prefix
    for column in sorted(set(starts)):
        late = sum(1 for s in starts if s >= column)
        if column > begin and late * (column - begin) >= min_skipped:
            segments.append(Segment(begin, column, _rows_started_before(starts, column)))
            begin = column
    segments.append(Segment(begin, width, tuple(range(len(prompts)))))
    return PrefillPlan(prefix, lengths, tuple(segments))


def _rows_started_before(starts: Sequence[int], column: int) -> tuple[int, ...]:
    return tuple(row for row, start in enumerate(starts) if start < column)


def grid(prompts: Sequence[Sequence[int]], plan: PrefillPlan, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, position ids) of the whole grid; positions count each row's own tokens.

    Without a shared prefix this is the plain left-padded batch that ``generate`` builds.
    """
    rows, width = len(prompts), plan.width
    input_ids = torch.full((rows, width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        first = plan.first_column(row)
        input_ids[row, : plan.prefix] = torch.tensor(ids[: plan.prefix], dtype=torch.long)
        input_ids[row, first:] = torch.tensor(ids[plan.prefix :], dtype=torch.long)
        mask[row, : plan.prefix] = 1
        mask[row, first:] = 1
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    return input_ids.to(device), mask.to(device), positions.to(device)


def prefill(
    model,
    prompts: Sequence[Sequence[int]],
    forward: Callable[..., object],
    *,
    on_rows: Callable[[torch.Tensor], None] | None = None,
    min_skipped: int = MIN_SKIPPED_TOKENS,
) -> tuple[object, object, torch.Tensor, torch.Tensor]:
    """Run the prefill of ``prompts`` (lists of ids, batch order) as :func:`plan_prefill` plans it.

    ``forward(input_ids, cache, mask, positions)`` makes one model call (the caller's kwargs:
    ``use_cache``, ``logits_to_keep``, hooks) and returns its output, whose ``.cache`` is carried on.
    ``on_rows(index)`` runs whenever the batch grows, with the previous forward's row feeding each row of
    the next. Returns the last forward's output (every row, batch order), the cache, and the grid's
    attention mask and position ids, from which decoding continues.
    """
    device = next(model.parameters()).device
    # A sliding window counts grid columns: padding between the prefix and a row's tokens would take the
    # place of context the row sees when run alone. Padding on the left only is what ``generate`` does.
    plan = plan_prefill(prompts, min_skipped, share_prefix=sliding_window(model.config) is None)
    input_ids, mask, positions = grid(prompts, plan, device)
    cache, output, active = None, None, None
    for segment in plan.segments:
        if active is not None and segment.rows != active:
            index = torch.tensor([active.index(r) if r in active else 0 for r in segment.rows], dtype=torch.long,
                                 device=device)
            cache.batch_select_indices(index)
            if on_rows is not None:
                on_rows(index)
        rows = torch.tensor(segment.rows, dtype=torch.long, device=device)
        output = forward(input_ids[rows, segment.start : segment.end], cache, mask[rows, : segment.end],
                         positions[rows, segment.start : segment.end])
        cache, active = output.cache, segment.rows
    return output, cache, mask, positions
