"""Write one variant's evaluation: per-task Parquet, the summary, and lm-eval's raw outputs beside them."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
from dataclasses import asdict
from typing import Any

from ..io import atomic_path, read_settings, write_json, write_parquet
from .records import SAMPLE_SCHEMA, SUMMARY_SCHEMA, table
from .runner import BOOTSTRAP_ITERS, SEEDS, EvalSettings, Evaluation, TaskEntry


def run_settings(settings: EvalSettings, **extra) -> dict[str, Any]:
    """What every output of one evaluation records: engine versions, seeds, batch size, limits."""
    return {"lm_eval_version": importlib.metadata.version("lm-eval"), "seeds": SEEDS,
            "bootstrap_iters": BOOTSTRAP_ITERS, **asdict(settings), **extra}


def write_evaluation(evaluation: Evaluation, entries: list[TaskEntry], *, model: str, variant: str,
                     task_paths: list[str], data_paths: dict[str, str], summary_path: str, raw_path: str,
                     raw_samples_path: str, settings: dict[str, Any]) -> None:
    """``task_paths[i]`` receives the rows of ``entries[i]``; see :mod:`prunescope.tasks.records` for the schemas."""
    for entry, path in zip(entries, task_paths, strict=True):
        data = data_paths.get(entry.name)
        rows = evaluation.samples[entry.name]
        isolation = sorted({row["exec_isolation"] for row in rows if row.get("exec_isolation")})  # code tasks
        write_parquet(table(rows, SAMPLE_SCHEMA, model=model, variant=variant), path, {
            **settings, "task": asdict(entry), **({"sandbox_isolation": isolation} if isolation else {}),
            "seconds": evaluation.seconds[entry.name],
            "cpu_seconds": evaluation.cpu_seconds[entry.name],
            "data": {"file": data, **read_settings(data)} if data else "lm-eval's hub dataset",
        })
    write_parquet(table(evaluation.summary, SUMMARY_SCHEMA, model=model, variant=variant), summary_path, {
        **settings, "tasks": [asdict(entry) for entry in entries], "seconds": evaluation.seconds,
        "cpu_seconds": evaluation.cpu_seconds,
    })
    write_json(evaluation.raw, raw_path)
    write_samples(evaluation.raw_samples, raw_samples_path)


def write_samples(samples: dict[str, dict[str, list[dict]]], path: str | os.PathLike) -> None:
    """lm-eval's logged samples as gzipped JSON lines, each with the configured task's name."""
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as out:
        for task, by_leaf in samples.items():
            for leaf, leaf_samples in by_leaf.items():
                for sample in leaf_samples:
                    out.write(json.dumps({"task": task, "subtask": leaf, **sample}, default=str) + "\n")
