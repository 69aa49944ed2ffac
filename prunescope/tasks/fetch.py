"""Fetch a hub task's datasets once, where the internet is reachable, for evaluation jobs that are not.

On a cluster the compute nodes often have no network. The local rule ``task_fetch`` runs on the submit
host: lm-eval builds the task (or every member of a group), which downloads its datasets into the
Hugging Face datasets cache, and a small JSON manifest records what was fetched. Evaluation jobs then
read that cache with ``HF_DATASETS_OFFLINE=1`` (the cache must be on a file system the nodes share,
e.g. ``HF_HOME`` on the project disk), so no job depends on the network and every variant sees the
same data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..offline import OFFLINE_VARIABLES
from .registry import OUTPUT_KINDS


def fetch_task(name: str, kind: str, manager=None) -> dict[str, Any]:
    """Build lm-eval task ``name`` (downloading its data) and return its manifest.

    Every leaf task must have the configured ``kind`` (a group's members are only known once loaded).
    ``manager``: an lm-eval ``TaskManager`` (default: the harness's own tasks).
    """
    import datasets
    from lm_eval.tasks import TaskManager

    manager = manager or TaskManager()
    loaded = manager.load(name)
    leaves = loaded["tasks"]
    if not leaves:
        raise ValueError(f"tasks: lm-eval task {name!r} has no member tasks")
    manifest_leaves = {}
    for leaf, task in sorted(leaves.items()):
        leaf_kind = OUTPUT_KINDS.get(task.OUTPUT_TYPE)
        if leaf_kind != kind:
            raise ValueError(f"tasks: {name!r} is configured as {kind} but lm-eval task {leaf!r} has output_type "
                             f"{task.OUTPUT_TYPE!r} ({leaf_kind or 'not supported'})")
        config = task.config
        manifest_leaves[leaf] = {
            "dataset_path": config.dataset_path,
            "dataset_name": config.dataset_name,
            "dataset_kwargs": {k: str(v) for k, v in (config.dataset_kwargs or {}).items()},
            "splits": {split: len(rows) for split, rows in (task.dataset or {}).items()},
        }
    return {
        "task": name,
        "kind": kind,
        "leaves": manifest_leaves,
        "datasets_cache": str(Path(datasets.config.HF_DATASETS_CACHE).resolve()),
        "datasets_version": datasets.__version__,
    }


def use_fetched_data(manifests: list[dict[str, Any]]) -> None:
    """Switch this process to the fetched cache only (call before lm-eval or datasets are imported).

    Fails, naming the folder, when the cache the data were fetched into is not visible here, which on a
    cluster means it is not on a shared file system.
    """
    for manifest in manifests:
        cache = Path(manifest["datasets_cache"])
        if not cache.is_dir():
            raise FileNotFoundError(
                f"task {manifest['task']!r} was fetched into {cache}, which this machine cannot see; put the "
                "Hugging Face cache on a file system shared by the submit host and the compute nodes "
                "(e.g. export HF_HOME=/project/.cache/huggingface before running snakemake)")
    if manifests:
        for variable in OFFLINE_VARIABLES:
            os.environ[variable] = "1"
