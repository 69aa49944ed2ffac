"""SharedContextLM: lm-eval's log-likelihood requests scored with each context computed once.

The cut plan against a brute-force search; every score against the continuation run alone after its
context (several attention implementations and a sliding window), whatever the batch and the cuts; and
lm-eval's own requests of real tasks against stock ``HFLM`` on a real tokenizer.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from conftest import tiny_config

from prunescope.probes.prefill import Segment
from prunescope.tasks.shared_context import SharedContextLM, context_batches, continuation_segments, score_continuations
from tests.tiny_checkpoint import save_tiny_checkpoint


def plan_cost(segments, cost):
    return sum(cost + len(s.rows) * (s.end - s.start) for s in segments)


def test_continuation_segments_hand_worked():
    # Rows of 5, 1, 9, 3 tokens, a forward worth 2 tokens: cut after column 1 (three rows go on) and after 5
    # (only the 9-token row): 3 forwards (6) + 4 + 3×4 + 1×4 row-columns = 26, against 38 for one forward.
    assert continuation_segments([5, 1, 9, 3], 2) == (Segment(0, 1, (0, 1, 2, 3)), Segment(1, 5, (0, 2, 3)),
                                                      Segment(5, 9, (2,)))
    assert continuation_segments([10, 2, 2, 2], 4) == (Segment(0, 2, (0, 1, 2, 3)), Segment(2, 10, (0,)))
    assert continuation_segments([10, 2, 2, 2], 100) == (Segment(0, 10, (0, 1, 2, 3)),)  # a cut costs more than it skips
    assert continuation_segments([4], 1) == (Segment(0, 4, (0,)),)
    with pytest.raises(ValueError, match="no empty row"):
        continuation_segments([3, 0])


def test_continuation_segments_are_the_cheapest_plan():
    rng = random.Random(0)
    for _ in range(40):
        lengths = [rng.randint(1, 30) for _ in range(rng.randint(1, 7))]
        cost = rng.choice([1, 8, 48])
        ends = sorted(set(lengths))
        cheapest = min(  # every subset of the rows' ends as cuts
            plan_cost([Segment(b, e, tuple(r for r, n in enumerate(lengths) if n > b))
                       for b, e in zip((0, *cuts), (*cuts, ends[-1]))], cost)
            for k in range(len(ends)) for cuts in itertools.combinations(ends[:-1], k))
        segments = continuation_segments(lengths, cost)
        assert plan_cost(segments, cost) == cheapest
        assert segments[0].start == 0 and segments[-1].end == max(lengths)
        for row, n in enumerate(lengths):  # each row is computed over exactly its own columns (and padding after)
            assert any(s.start < n <= s.end and row in s.rows for s in segments)


def test_context_batches_keep_a_context_whole_longest_first():
    groups = {(1, 2, 3): [0, 1, 2], (4,): [3, 4], (5, 6): [5, 6, 7, 8], (7, 8): [9]}
    assert context_batches(groups, 4) == [[(1, 2, 3)], [(5, 6)], [(7, 8), (4,)]]
    assert context_batches(groups, 2) == [[(1, 2, 3)], [(5, 6)], [(7, 8)], [(4,)]]  # a context over the size


def attention_model(family, attention, **overrides):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(family, **overrides), attn_implementation=attention).eval()


@torch.no_grad()
def alone(model, context, continuation):
    """The continuation's log-likelihood and greedy flag from one forward over context + continuation."""
    logprobs = torch.log_softmax(model(torch.tensor([context + continuation])).logits[0].double(), dim=-1)
    steps = logprobs[len(context) - 1 : len(context) + len(continuation) - 1]
    targets = torch.tensor(continuation)
    return float(steps.gather(1, targets[:, None]).sum()), bool((steps.argmax(-1) == targets).all())


@torch.no_grad()
def greedy_continuation(model, context, n):
    tokens = list(context)
    for _ in range(n):
        tokens.append(int(model(torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(context):]


HEADER = list(range(3, 43))  # a 40-token few-shot header shared by every context


@pytest.mark.parametrize(("family", "attention", "overrides"), [
    ("llama", "eager", {}), ("llama", "sdpa", {}), ("qwen3", "sdpa", {}), ("mistral", "sdpa", {"sliding_window": 20}),
])
def test_scores_equal_each_continuation_run_alone(family, attention, overrides):
    model = attention_model(family, attention, **overrides)
    contexts = [HEADER + [50, 51], HEADER + [60 + i for i in range(17)], HEADER + [70]]
    continuations = [
        [[5], [6, 7, 8], list(range(80, 110)), greedy_continuation(model, contexts[0], 4)],
        [[9, 10], [11]],
        [list(range(90, 102)), [12, 13, 14, 15, 16, 17], greedy_continuation(model, contexts[2], 1)],
    ]
    expected = [[alone(model, c, k) for k in options] for c, options in zip(contexts, continuations)]
    assert expected[0][3][1] and expected[2][2][1]  # the greedy continuations are recognised as such
    runs = {
        "together": score_continuations(model, contexts, continuations),
        "every cut": score_continuations(model, contexts, continuations, forward_cost=1),
        "each context alone": [score_continuations(model, [c], [k])[0] for c, k in zip(contexts, continuations)],
    }
    for name, scores in runs.items():
        for got_group, want_group in zip(scores, expected, strict=True):
            for (loglik, greedy), (want_loglik, want_greedy) in zip(got_group, want_group, strict=True):
                assert loglik == pytest.approx(want_loglik, abs=1e-4), name
                assert greedy == want_greedy, name


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory):
    from lm_eval.models.huggingface import HFLM

    from prunescope.loading import load_variant

    model, tokenizer = load_variant(save_tiny_checkpoint(tmp_path_factory.mktemp("model")), "dense")
    return model, tokenizer, HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)


def lm_eval_requests(name, shots, limit, tmp_path):
    from prunescope.tasks.data import write_task_data
    from prunescope.tasks.harness import build_task

    path = tmp_path / f"{name}.parquet"
    write_task_data(name, path)
    task = build_task(name, "embedded", shots, path, limit=limit)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return list(task.instances)


@pytest.mark.parametrize(("name", "shots", "batch_size"), [("arc_easy", 1, 3), ("hellaswag", 0, 8), ("piqa", 0, 1)])
def test_lm_eval_requests_score_as_stock_hflm(tiny_lms, tmp_path, name, shots, batch_size):
    model, tokenizer, stock = tiny_lms
    requests = lm_eval_requests(name, shots, 5, tmp_path)
    shared = SharedContextLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    want, got = stock.loglikelihood(requests, disable_tqdm=True), shared.loglikelihood(requests, disable_tqdm=True)
    assert len(got) == len(want) == len(requests) >= 10
    for (loglik, greedy), (want_loglik, want_greedy) in zip(got, want):
        assert loglik == pytest.approx(want_loglik, abs=1e-4)
        assert greedy == want_greedy


def test_requests_lm_eval_would_truncate_go_to_stock_hflm(tiny_lms):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tokenizer, _ = tiny_lms
    long_context = " ".join(["the answer is in the passage"] * 12)
    pairs = [(long_context, " yes"), (long_context, " no"), ("Question: which one?", " A"), ("Question: which one?", " B")]
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]
    stock = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=24)
    shared = SharedContextLM(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=24)
    assert len(stock.tok_encode(long_context)) > 24  # lm-eval cuts these contexts from the left
    want, got = stock.loglikelihood(requests, disable_tqdm=True), shared.loglikelihood(requests, disable_tqdm=True)
    for (loglik, greedy), (want_loglik, want_greedy) in zip(got, want):
        assert loglik == pytest.approx(want_loglik, abs=1e-4)
        assert greedy == want_greedy
