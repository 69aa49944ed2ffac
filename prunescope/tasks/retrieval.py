"""Question -> passage retrieval in the variant's embedding space (the paper's Table 1a setting, Eq. 4).

Queries are SQuAD questions; the corpus is the de-duplicated set of their own contexts, and a
question's relevant passage is its own context (exactly one per query). Each text is embedded with
the variant's final hidden state (``last_hidden_state``, after the final norm) in two ways, both
recorded: the state at the last token (an EOS token is appended, as E5-Mistral does) and the mean over
all tokens. Passages are ranked by cosine similarity S(q, d) = cos(h_q, h_d).

Metrics per query (one relevant passage at rank r): nDCG@10 = 1 / log2(r + 1) if r <= 10 else 0 (the
ideal DCG is 1), recall@1 = 1 if r = 1 else 0; the task score is their mean over queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..adapter import model_parts

POOLINGS = ("last_token", "mean")


@dataclass(frozen=True)
class RetrievalSet:
    query_ids: list[str]
    queries: list[str]
    passages: list[str]
    relevant: list[int]  # index into passages, per query


def retrieval_set(rows: list[dict], limit: int | None) -> RetrievalSet:
    """The first ``limit`` questions of the converted SQuAD rows and their de-duplicated contexts."""
    rows = rows[:limit] if limit is not None else rows
    passage_index: dict[str, int] = {}
    for row in rows:
        passage_index.setdefault(row["context"], len(passage_index))
    return RetrievalSet([row["id"] for row in rows], [row["question"] for row in rows], list(passage_index),
                        [passage_index[row["context"]] for row in rows])


@torch.no_grad()
def embed(model, tokenizer, texts: list[str], *, batch_size: int = 8, max_tokens: int = 256,
          prefix: str = "") -> dict[str, torch.Tensor]:
    """{pooling: (len(texts), hidden) fp32 embeddings}; see the module docstring."""
    backbone = model_parts(model).backbone
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    ids = [tokenizer(prefix + text, add_special_tokens=False)["input_ids"][: max_tokens - 1] + [eos] for text in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
    out = {pooling: torch.zeros(len(ids), model.config.hidden_size) for pooling in POOLINGS}
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(ids[i]) for i in batch)
        input_ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, i in enumerate(batch):  # right padding: real tokens keep positions 0..n-1
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        hidden = backbone(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state.float().cpu()
        lengths = mask.sum(1)
        out["last_token"][batch] = hidden[torch.arange(len(batch)), lengths - 1]
        out["mean"][batch] = (hidden * mask.unsqueeze(-1)).sum(1) / lengths.unsqueeze(-1)
    return out


def cosine_scores(query_emb: torch.Tensor, passage_emb: torch.Tensor) -> torch.Tensor:
    """(queries, passages) cosine similarities, in fp64."""
    normalize = torch.nn.functional.normalize
    return normalize(query_emb.double(), dim=-1) @ normalize(passage_emb.double(), dim=-1).T


def ranks(scores: torch.Tensor, relevant: list[int]) -> list[int]:
    """Rank (1 = best) of each query's relevant passage; a tie with another passage counts against it."""
    gold = scores[torch.arange(len(relevant)), torch.tensor(relevant)]
    ahead = (scores >= gold.unsqueeze(1)).sum(1) - 1  # passages other than the relevant one scoring >= it
    return (ahead + 1).tolist()


def ndcg_at_10(rank: int) -> float:
    return 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0


def recall_at_1(rank: int) -> float:
    return 1.0 if rank == 1 else 0.0


def evaluate_retrieval(model, tokenizer, data: RetrievalSet, *, batch_size: int = 8, max_tokens: int = 256,
                       query_prefix: str = "") -> list[dict]:
    """Per (query, pooling) rows in the per-sample table's layout (pooling in ``filter``)."""
    queries = embed(model, tokenizer, data.queries, batch_size=batch_size, max_tokens=max_tokens, prefix=query_prefix)
    passages = embed(model, tokenizer, data.passages, batch_size=batch_size, max_tokens=max_tokens)
    rows = []
    for pooling in POOLINGS:
        scores = cosine_scores(queries[pooling], passages[pooling])
        for i, rank in enumerate(ranks(scores, data.relevant)):
            top = int(scores[i].argmax())
            rows.append({"filter": pooling, "doc_id": i, "prompt": query_prefix + data.queries[i],
                         "target": data.passages[data.relevant[i]], "prediction": data.passages[top], "rank": rank,
                         "correct": recall_at_1(rank),
                         "metrics": {"ndcg@10": ndcg_at_10(rank), "recall@1": recall_at_1(rank)}})
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Mean and standard error of each metric per pooling (the per-sample rows recomputed)."""
    out = []
    for pooling in POOLINGS:
        pooled = [row["metrics"] for row in rows if row["filter"] == pooling]
        for metric in ("ndcg@10", "recall@1"):
            values = torch.tensor([m[metric] for m in pooled], dtype=torch.float64)
            n = len(values)
            stderr = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else None
            out.append({"metric": metric, "filter": pooling, "value": float(values.mean()) if n else float("nan"),
                        "stderr": stderr, "n": n})
    return out
