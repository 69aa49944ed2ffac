"""Evaluate one loaded model (any variant) on the configured tasks.

lm-evaluation-harness is the engine: one ``HFLM(pretrained=<the model object>)`` with a pinned batch
size, one ``simple_evaluate(..., log_samples=True)`` per configured task (each task has its own
``limit`` and number of shots), and, for a generative task, a second call scoring the gold answer under
teacher forcing on the same prompts. Retrieval runs on the same model object (no lm-eval equivalent).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from . import harness, records, retrieval
from .code import SandboxScorer
from .registry import OUTPUT_KINDS, TASKS
from .sandbox import SandboxLimits

log = logging.getLogger(__name__)


class _DropCustomDatasetNotice(logging.Filter):
    """lm-eval warns about `--metadata` kwargs for every task with a custom dataset loader, which is how
    converted snapshot files are read here; the notice does not apply."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed to `--metadata`" not in record.getMessage()


logging.getLogger("lm_eval.api.task").addFilter(_DropCustomDatasetNotice())
# lm-eval's own default seeds (simple_evaluate), fixed so that few-shot draws are reproducible.
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
BOOTSTRAP_ITERS = 1000  # only metrics without a closed-form standard error are bootstrapped


@dataclass(frozen=True)
class TaskEntry:
    name: str
    kind: str
    limit: int | None = None
    shots: int = 0
    gold: bool = True  # generative: also score the gold answer under teacher forcing
    max_gen_toks: int | None = None  # generative: cap on generated tokens (None: the task's own)

    @classmethod
    def from_config(cls, entry: dict) -> "TaskEntry":
        return cls(entry["name"], entry["kind"], entry.get("limit"), entry.get("shots", 0), entry.get("gold", True),
                   entry.get("max_gen_toks"))


@dataclass(frozen=True)
class EvalSettings:
    source: str = "embedded"
    batch_size: int = 8
    apply_chat_template: bool = False
    sandbox: SandboxLimits = SandboxLimits()
    retrieval_batch_size: int = 8
    retrieval_max_tokens: int = 256
    retrieval_query_prefix: str = ""


@dataclass
class Evaluation:
    samples: dict[str, list[dict]] = field(default_factory=dict)  # task -> per-sample rows
    summary: list[dict] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # task -> lm-eval outputs without samples
    raw_samples: dict[str, Any] = field(default_factory=dict)  # task -> lm-eval's logged samples
    seconds: dict[str, float] = field(default_factory=dict)  # task -> wall-clock seconds
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # task -> CPU seconds of this process


def evaluate_tasks(model, tokenizer, entries: list[TaskEntry], settings: EvalSettings,
                   data_paths: dict[str, str]) -> Evaluation:
    """Run every entry on ``model``; ``data_paths``: task -> converted data file (tasks read offline)."""
    from lm_eval.tasks import TaskManager

    from .shared_context import SharedContextLM

    lm = SharedContextLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size)
    needs_index = any(e.name not in TASKS for e in entries)  # indexing lm-eval's YAML files takes ~15 s
    manager = TaskManager(include_defaults=needs_index)
    out = Evaluation()
    with _environment_collected_once():
        for entry in entries:
            started, cpu = time.perf_counter(), time.process_time()
            if entry.kind == "retrieval":
                _run_retrieval(model, tokenizer, entry, settings, data_paths[entry.name], out)
            else:
                _run_lm_eval(lm, manager, entry, settings, data_paths.get(entry.name), out)
            out.seconds[entry.name] = time.perf_counter() - started
            out.cpu_seconds[entry.name] = time.process_time() - cpu
            log.info("%s: %.1f s (%.1f CPU s)", entry.name, out.seconds[entry.name], out.cpu_seconds[entry.name])
    return out


@contextmanager
def _environment_collected_once():
    """simple_evaluate ends by collecting the environment into its output (torch's collect_env runs
    `pip list` and more in subprocesses: ~2 s per call); one process needs that once, not per task."""
    import lm_eval.evaluator as evaluator

    collect, collected = evaluator.add_env_info, {}

    def add_env_info(storage):
        if not collected:
            collect(collected)
        storage.update(collected)

    evaluator.add_env_info = add_env_info
    try:
        yield
    finally:
        evaluator.add_env_info = collect


def _run_lm_eval(lm, manager, entry: TaskEntry, settings: EvalSettings, data_path, out: Evaluation) -> None:
    spec = TASKS.get(entry.name)
    scorer = SandboxScorer(settings.sandbox) if spec is not None and spec.code else None
    if spec is not None:
        top = harness.build_task(entry.name, settings.source, entry.shots, data_path, scorer, entry.limit)
        leaves = {entry.name: top}
    else:  # any other lm-eval task or group, hub data
        loaded = manager.load(entry.name)
        top = loaded["groups"][entry.name] if entry.name in loaded["groups"] else loaded["tasks"][entry.name]
        leaves = loaded["tasks"]
    for leaf, task in leaves.items():
        kind = OUTPUT_KINDS.get(task.OUTPUT_TYPE)
        if kind != entry.kind:
            raise ValueError(f"tasks: {entry.name!r} is configured as {entry.kind} but lm-eval task {leaf!r} has "
                             f"output_type {task.OUTPUT_TYPE!r} ({kind or 'not supported'})")
        if task.config.unsafe_code and scorer is None:
            raise ValueError(f"tasks: {leaf!r} executes generated code; supported code tasks: humaneval, mbpp")
    gen_kwargs = {"max_gen_toks": entry.max_gen_toks} if entry.max_gen_toks else None
    result = _simple_evaluate(lm, manager, top, entry.limit, entry.shots, settings.apply_chat_template,
                              unsafe=scorer is not None, gen_kwargs=gen_kwargs)
    rows = records.sample_rows(entry.name, entry.kind, result, leaves, scorer)
    out.summary += records.summary_rows(entry.name, entry.kind, result)
    out.raw[entry.name] = {k: v for k, v in result.items() if k != "samples"}
    out.raw_samples[entry.name] = result["samples"]
    if entry.kind == "generative" and entry.gold and len(leaves) == 1:
        ((leaf, task),) = leaves.items()
        first_filter = {}
        for sample in result["samples"][leaf]:  # the same documents repeat once per filter
            first_filter.setdefault(sample["doc_id"], sample)
        samples = list(first_filter.values())
        gold = harness.gold_task(leaf, samples, task, spec.gold if spec else None)
        gold_result = _simple_evaluate(lm, manager, gold, None, 0, False, unsafe=False)
        records.attach_gold(rows, gold_result, [s["doc_id"] for s in samples])
        out.summary += records.summary_rows(entry.name, entry.kind, gold_result, prefix="gold_", subtask=leaf)
        out.raw[entry.name + harness.GOLD_SUFFIX] = {k: v for k, v in gold_result.items() if k != "samples"}
        out.raw_samples[entry.name + harness.GOLD_SUFFIX] = gold_result["samples"]
    out.samples[entry.name] = rows


def _simple_evaluate(lm, manager, task, limit, shots, chat, unsafe, gen_kwargs=None):
    from lm_eval import simple_evaluate

    return simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=limit, num_fewshot=shots,
                           log_samples=True, bootstrap_iters=BOOTSTRAP_ITERS, apply_chat_template=chat,
                           confirm_run_unsafe_code=unsafe, gen_kwargs=gen_kwargs, **SEEDS)


def _run_retrieval(model, tokenizer, entry: TaskEntry, settings: EvalSettings, data_path, out: Evaluation) -> None:
    data = retrieval.retrieval_set(pq.read_table(data_path).to_pylist(), entry.limit)
    rows = retrieval.evaluate_retrieval(model, tokenizer, data, batch_size=settings.retrieval_batch_size,
                                        max_tokens=settings.retrieval_max_tokens,
                                        query_prefix=settings.retrieval_query_prefix)
    out.samples[entry.name] = [{"task": entry.name, "subtask": entry.name, "task_kind": "retrieval", **row} for row in rows]
    out.summary += [{"task": entry.name, "subtask": entry.name, "task_kind": "retrieval", **row}
                    for row in retrieval.summary(rows)]
    out.raw[entry.name] = {"n_queries": len(data.queries), "n_passages": len(data.passages),
                           "query_prefix": settings.retrieval_query_prefix, "max_tokens": settings.retrieval_max_tokens}
