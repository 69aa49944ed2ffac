"""lm-eval's logged samples and results -> prunescope's per-sample and summary tables.

Per-sample table (``results/{model}/{variant}/tasks/{task}.parquet``), one row per evaluated document
and filter (retrieval: per query and pooling, the pooling in ``filter``):

- keys ``model, variant, task, subtask`` (the lm-eval leaf task; a group's members share ``task``),
  ``task_kind``, ``filter`` (lm-eval's filter name), ``doc_id`` (lm-eval's document index);
- ``prompt`` (the first request's context), ``target`` (the gold: the correct option's text, or the
  reference answer(s), several as a JSON list), ``prediction`` (the chosen option's text, or the
  filtered generation), ``response`` (the raw generation);
- multiple choice: ``options``, ``option_loglik`` (summed log-likelihood of each option),
  ``gold_index``, ``chosen`` (argmax of option_loglik: lm-eval's ``acc``), ``chosen_norm`` (argmax of
  option_loglik / option length in characters: ``acc_norm``);
- ``correct``: the sample's value of the task's first metric; ``metrics``: every numeric per-sample
  metric lm-eval reported (map metric -> value);
- ``gold_loglik`` and ``gold_is_greedy``: teacher-forced log-likelihood of the gold answer and whether
  it is the greedy continuation (multiple choice: of the correct option; generative: the gold companion);
- ``exec_status`` (code tasks: passed | failed | timeout | memory | blocked | error) and
  ``exec_isolation`` (the sandbox the program ran in, e.g. ``full: bubblewrap 0.8.0 (...) + cgroup v1
  (memory, pids)``), ``rank`` (retrieval: rank of the relevant passage, 1 = first).

Summary table: ``model, variant, task, subtask, task_kind, metric, filter, value, stderr, n`` as lm-eval
reported them (gold companion metrics as ``gold_acc`` / ``gold_loglik``; stderr null where lm-eval has none).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa

from .code import SandboxScorer, program_source

SAMPLE_SCHEMA = pa.schema([
    ("model", pa.string()), ("variant", pa.string()), ("task", pa.string()), ("subtask", pa.string()),
    ("task_kind", pa.string()), ("filter", pa.string()), ("doc_id", pa.int64()),
    ("prompt", pa.string()), ("target", pa.string()), ("prediction", pa.string()), ("response", pa.string()),
    ("options", pa.list_(pa.string())), ("option_loglik", pa.list_(pa.float64())), ("gold_index", pa.int64()),
    ("chosen", pa.int64()), ("chosen_norm", pa.int64()),
    ("correct", pa.float64()), ("metrics", pa.map_(pa.string(), pa.float64())),
    ("gold_loglik", pa.float64()), ("gold_is_greedy", pa.bool_()),
    ("exec_status", pa.string()), ("exec_isolation", pa.string()), ("rank", pa.int64()),
])
SUMMARY_SCHEMA = pa.schema([
    ("model", pa.string()), ("variant", pa.string()), ("task", pa.string()), ("subtask", pa.string()),
    ("task_kind", pa.string()), ("metric", pa.string()), ("filter", pa.string()),
    ("value", pa.float64()), ("stderr", pa.float64()), ("n", pa.int64()),
])


def sample_rows(task_name: str, kind: str, result: dict, tasks: dict, scorer: SandboxScorer | None = None) -> list[dict]:
    """Rows for every logged sample of every leaf task in ``result`` (one simple_evaluate output)."""
    rows = []
    for subtask, samples in result["samples"].items():
        task = tasks[subtask]
        for sample in samples:
            row = {"task": task_name, "subtask": subtask, "task_kind": kind, "filter": sample["filter"],
                   "doc_id": int(sample["doc_id"]), "prompt": _context(sample), **_metrics(sample)}
            if kind == "multiple_choice":
                row.update(_choice_fields(task, sample))
            else:
                row.update(_generation_fields(sample, scorer))
            rows.append(row)
    return rows


def _context(sample) -> str:
    context = sample["arguments"][0][0]
    return context if isinstance(context, str) else json.dumps(context)


def _metrics(sample) -> dict:
    values = {name: float(sample[name]) for name in sample["metrics"] if isinstance(sample.get(name), (int, float))}
    primary = sample["metrics"][0] if sample["metrics"] else None
    return {"metrics": values, "correct": values.get(primary)}


def _choice_fields(task, sample) -> dict:
    """Mirrors lm-eval's multiple-choice scoring (ConfigurableTask.process_results) for one sample."""
    doc = sample["doc"]
    options = [str(option) for option in task.doc_to_choice(doc)]
    lls = np.array([float(ll) for ll, _ in sample["filtered_resps"]])[: len(options)]
    greedy = [bool(g) for _, g in sample["filtered_resps"]][: len(options)]
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, str):
        gold = options.index(gold) if gold in options else None
    if isinstance(gold, list):  # several correct options: keep the first for the gold columns
        gold = gold[0]
    chosen = int(np.argmax(lls))
    valid = gold is not None and 0 <= gold < len(options)
    return {
        "options": options, "option_loglik": lls.tolist(), "gold_index": gold if valid else None,
        "chosen": chosen, "chosen_norm": int(np.argmax(lls / np.array([float(len(o)) for o in options]))),
        "target": options[gold] if valid else None, "prediction": options[chosen],
        "gold_loglik": float(lls[gold]) if valid else None, "gold_is_greedy": greedy[gold] if valid else None,
    }


def _generation_fields(sample, scorer: SandboxScorer | None) -> dict:
    (filtered, *_), ((raw, *_),) = sample["filtered_resps"], sample["resps"]
    target = sample["target"]
    fields = {"prediction": _text(filtered), "response": raw,
              "target": target if isinstance(target, str) else json.dumps(target)}
    if scorer is not None:
        outcome = scorer.outcomes.get(program_source(filtered, str(target)))
        fields["exec_status"] = outcome.status if outcome else None
        fields["exec_isolation"] = outcome.isolation if outcome else None
    return fields


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value)


def attach_gold(rows: list[dict], gold_result: dict, doc_ids: list[int]) -> None:
    """Copy the gold companion's per-sample scores onto the generation rows (companion doc i = doc_ids[i])."""
    (samples,) = gold_result["samples"].values()
    by_doc = {doc_ids[s["doc_id"]]: (float(s["loglik"]), bool(s["acc"])) for s in samples}
    for row in rows:
        if row["doc_id"] in by_doc:
            row["gold_loglik"], row["gold_is_greedy"] = by_doc[row["doc_id"]]


def summary_rows(task_name: str, kind: str, result: dict, prefix: str = "", subtask: str | None = None) -> list[dict]:
    """One row per (lm-eval task or group, metric, filter) that ``result`` reports."""
    rows = []
    for name, values in result["results"].items():
        n = _n_samples(result, name)
        for key, value in values.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            stderr = values.get(f"{metric}_stderr,{filter_name}")
            rows.append({"task": task_name, "subtask": subtask or name, "task_kind": kind, "metric": prefix + metric,
                         "filter": filter_name, "value": float(value), "n": n,
                         "stderr": float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None})
    return rows


def _n_samples(result: dict, name: str) -> int | None:
    counts = result.get("n-samples", {})
    if name in counts:
        return int(counts[name]["effective"])
    members = [m for m in result.get("group_subtasks", {}).get(name, []) if m in counts]
    return sum(int(counts[m]["effective"]) for m in members) if members else None


def table(rows: list[dict], schema: pa.Schema, **constants) -> pa.Table:
    """Rows (missing columns null) plus constant columns such as model and variant, in ``schema`` order."""
    columns = {field.name: [({**row, **constants}).get(field.name) for row in rows] for field in schema}
    return pa.Table.from_pydict(columns, schema=schema)
