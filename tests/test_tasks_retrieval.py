"""Retrieval metrics and ranking against hand-worked examples."""

import math

import pytest
import torch

from prunescope.tasks.retrieval import cosine_scores, ndcg_at_10, ranks, recall_at_1, retrieval_set, summary


def test_ndcg_and_recall_for_one_relevant_passage():
    # DCG with a single relevant passage at rank r is 1 / log2(r + 1); the ideal DCG (rank 1) is 1.
    assert ndcg_at_10(1) == 1.0
    assert ndcg_at_10(3) == pytest.approx(0.5)
    assert ndcg_at_10(10) == pytest.approx(1 / math.log2(11))
    assert ndcg_at_10(11) == 0.0
    assert [recall_at_1(r) for r in (1, 2, 50)] == [1.0, 0.0, 0.0]


def test_ranks_by_cosine_with_ties_against_the_relevant_passage():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    passages = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [5.0, 5.0]])
    scores = cosine_scores(queries, passages)
    assert scores[0].tolist() == pytest.approx([1.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)])
    # query 0: relevant passage 2 is behind passage 0 and tied with 3 -> rank 3
    # query 1: relevant passage 1 is the best -> rank 1; query 2: passages 2 and 3 tie -> rank 2
    assert ranks(scores, [2, 1, 3]) == [3, 1, 2]


def test_retrieval_set_dedupes_passages_and_keeps_question_order():
    rows = [{"id": "a", "question": "qa", "context": "P1"}, {"id": "b", "question": "qb", "context": "P2"},
            {"id": "c", "question": "qc", "context": "P1"}, {"id": "d", "question": "qd", "context": "P3"}]
    data = retrieval_set(rows, limit=3)
    assert data.queries == ["qa", "qb", "qc"] and data.passages == ["P1", "P2"] and data.relevant == [0, 1, 0]


def test_summary_is_the_mean_over_queries_per_pooling():
    rows = [{"filter": pooling, "metrics": {"ndcg@10": ndcg_at_10(r), "recall@1": recall_at_1(r)}}
            for pooling, r in [("last_token", 1), ("last_token", 3), ("mean", 2), ("mean", 20)]]
    values = {(row["metric"], row["filter"]): (row["value"], row["n"]) for row in summary(rows)}
    assert values[("ndcg@10", "last_token")] == (pytest.approx(0.75), 2)
    assert values[("recall@1", "last_token")] == (pytest.approx(0.5), 2)
    assert values[("ndcg@10", "mean")] == (pytest.approx(1 / math.log2(3) / 2), 2)
    assert values[("recall@1", "mean")] == (0.0, 2)
