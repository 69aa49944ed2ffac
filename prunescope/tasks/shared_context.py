"""lm-eval's Hugging Face model, scoring the continuations of one context from one forward of that context.

A multiple-choice item asks lm-eval for the log-likelihood of each option after the same context (ARC 3–5
options, HellaSwag 4, PIQA 2). Stock ``HFLM`` runs context + option once per option, so the context is
computed once per option, and it projects every position onto the vocabulary although only the option's
positions are read (lm-eval's source marks grouping requests by context as work still to do).

:class:`SharedContextLM` keeps ``HFLM`` for everything else (tokenization, generation, rolling windows) and
scores ``loglikelihood`` requests so:

1. requests are grouped by their context tokens;
2. the contexts of a batch of groups go through :func:`prunescope.probes.prefill.prefill` (no padding
   computed, a shared few-shot header once), with the LM head on the last position only: that gives each
   option's first token;
3. the KV cache is copied to one row per option (``Cache.batch_select_indices``) and the options' other
   tokens follow, right-padded, in forwards that rows leave as their tokens end
   (:func:`continuation_segments`); every logit they compute is read.

The answer is lm-eval's: the summed log-probability of the continuation and whether greedy decoding
produces it, equal to stock ``HFLM`` to fp32 tolerance and independent of the batch. A request that lm-eval
would truncate (context + continuation longer than the model's window) is left to stock ``HFLM``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lm_eval.models.huggingface import HFLM

from ..probes.decoding import cached_forward
from ..probes.prefill import PAD_ID, Segment, plan_prefill, prefill

# What one more forward costs, in tokens computed: SmolLM2-135M in fp32 on one CPU core takes about 130 ms
# per forward before its first token (reading every weight once) and about 2.5 ms per token after it. Cutting
# a forward in two to skip fewer padded tokens than this loses time.
FORWARD_COST_TOKENS = 48
Request = tuple[tuple[str, str], list[int], list[int]]  # ((context, continuation), context ids, continuation ids)
Answer = tuple[float, bool]  # (log-likelihood of the continuation, whether it is the greedy continuation)


class SharedContextLM(HFLM):
    """``HFLM`` whose ``loglikelihood`` computes a context once for all its continuations (module docstring)."""

    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[Answer]:
        batch_size = override_bs or self.batch_size
        if self.backend != "causal" or not isinstance(batch_size, int):
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        answers: list[Answer | None] = [None] * len(requests)
        too_long = [i for i, (_, context, continuation) in enumerate(requests)
                    if len(context) + len(continuation) > self.max_length + 1]
        if too_long:  # lm-eval truncates these from the left: its own code scores them
            for i, answer in zip(too_long, super()._loglikelihood_tokens([requests[i] for i in too_long],
                                                                         True, override_bs)):
                answers[i] = answer
        skipped = set(too_long)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, context, _) in enumerate(requests):
            if i not in skipped:
                groups.setdefault(tuple(context), []).append(i)
        for batch in context_batches(groups, batch_size):
            contexts = [list(context) for context in batch]
            continuations = [[requests[i][2] for i in groups[context]] for context in batch]
            with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                                 enabled=self.mixed_precision_dtype is not None):
                scores = score_continuations(self.model, contexts, continuations, self.softmax_dtype)
            for context, group_scores in zip(batch, scores):
                for i, answer in zip(groups[context], group_scores):
                    answers[i] = answer
                    request_str = requests[i][0]
                    if request_str is not None:  # rolling windows carry None and are cached per document
                        self.cache_hook.add_partial("loglikelihood", request_str, answer)
        return answers


def context_batches(groups: dict[tuple[int, ...], list[int]], batch_size: int) -> list[list[tuple[int, ...]]]:
    """Contexts in batches of about ``batch_size`` requests (a context's requests never split; one context
    alone may exceed it), longest context first as lm-eval orders its batches."""
    order = sorted(groups, key=lambda context: (-len(context), context))
    batches: list[list[tuple[int, ...]]] = []
    count = 0
    for context in order:
        if not batches or count + len(groups[context]) > batch_size:
            batches.append([])
            count = 0
        batches[-1].append(context)
        count += len(groups[context])
    return batches


def continuation_segments(lengths: Sequence[int], forward_cost: int = FORWARD_COST_TOKENS) -> tuple[Segment, ...]:
    """The forwards over right-padded rows of ``lengths`` tokens (row order), each row leaving at a cut.

    A forward costs about ``forward_cost`` tokens beyond the tokens it computes, so the cuts are the ones
    that minimise ``forwards × forward_cost + computed row-columns`` (dynamic programming over the rows'
    ends). A segment starting at column ``b`` computes every row longer than ``b``.
    """
    if not lengths or min(lengths) < 1:
        raise ValueError("continuation_segments needs at least one row and no empty row")
    ends = sorted(set(lengths))
    starts = [0] + ends[:-1]  # where a segment may begin: column 0 or a row's end
    active = {begin: sum(1 for n in lengths if n > begin) for begin in starts}  # rows a segment from there computes
    best = {0: (0, None)}  # column -> (least cost of the columns before it, where its segment began)
    for end in ends:
        best[end] = min((best[begin][0] + forward_cost + active[begin] * (end - begin), begin)
                        for begin in starts if begin < end)
    cuts, column = [], ends[-1]
    while column:
        cuts.append(column)
        column = best[column][1]
    bounds = [0] + cuts[::-1]
    return tuple(Segment(begin, end, tuple(r for r, n in enumerate(lengths) if n > begin))
                 for begin, end in zip(bounds, bounds[1:]))


@torch.no_grad()
def score_continuations(model, contexts: Sequence[list[int]], continuations: Sequence[Sequence[list[int]]],
                        softmax_dtype=None, forward_cost: int = FORWARD_COST_TOKENS) -> list[list[Answer]]:
    """For each context (non-empty ids) and each of its continuations (non-empty ids): the summed
    log-probability of the continuation after the context, and whether every token is the argmax.

    Log-probabilities are taken in ``softmax_dtype`` (fp32 when None; stock lm-eval keeps the model's dtype).
    ``forward_cost`` (:data:`FORWARD_COST_TOKENS`) decides where the prefill and the continuations cut.
    """
    device = next(model.parameters()).device

    output, cache, mask, positions = prefill(model, contexts, cached_forward(model), min_skipped=forward_cost)
    first = output.logits[:, -1].to(softmax_dtype or torch.float32)  # [contexts, vocab]: each first token
    rows = [(g, k) for g, options in enumerate(continuations) for k in range(len(options))]
    # Tokens after the first: one row per continuation that has them, fed its own tokens but the last.
    longer = [(g, k) for g, k in rows if len(continuations[g][k]) > 1]
    rest: dict[tuple[int, int], list[torch.Tensor]] = {pair: [] for pair in longer}
    if longer:
        owner = torch.tensor([g for g, _ in longer], dtype=torch.long, device=device)
        cache.batch_select_indices(owner)
        fed_lengths = [len(continuations[g][k]) - 1 for g, k in longer]
        width = max(fed_lengths)
        ids = torch.full((len(longer), width), PAD_ID, dtype=torch.long, device=device)
        fed = torch.zeros((len(longer), width), dtype=mask.dtype, device=device)
        for row, (g, k) in enumerate(longer):
            ids[row, : fed_lengths[row]] = torch.tensor(continuations[g][k][:-1], dtype=torch.long, device=device)
            fed[row, : fed_lengths[row]] = 1
        mask = torch.cat([mask[owner], fed], 1)
        # The grid is left-padded, so its last column is every context's last token.
        next_positions = positions[owner, -1:] + 1 + torch.arange(width, device=device)
        context_width, active = positions.shape[1], None
        for segment in continuation_segments(fed_lengths, forward_cost):
            if active is not None and segment.rows != active:
                cache.batch_select_indices(torch.tensor([active.index(r) for r in segment.rows], device=device))
            taken = torch.tensor(segment.rows, dtype=torch.long, device=device)
            logits = model(input_ids=ids[taken, segment.start : segment.end], cache=cache, use_cache=True,
                           attention_mask=mask[taken, : context_width + segment.end],
                           position_ids=next_positions[taken, segment.start : segment.end]).logits
            for i, row in enumerate(segment.rows):
                kept = min(segment.end, fed_lengths[row]) - segment.start
                if kept > 0:
                    rest[longer[row]].append(logits[i, :kept].to(softmax_dtype or torch.float32))
            active = segment.rows
    scores: list[list[Answer]] = [[] for _ in contexts]
    for g, k in rows:
        tokens = continuations[g][k]
        step_logits = torch.cat([first[g : g + 1], *rest.get((g, k), [])])
        targets = torch.tensor(tokens, dtype=torch.long, device=device)
        logprobs = step_logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(step_logits, dim=-1)
        greedy = bool((step_logits.argmax(dim=-1) == targets).all())
        scores[g].append((float(logprobs.sum()), greedy))
    return scores
