"""Hub tasks are fetched once (local rule task_fetch) and evaluated from the cache offline.

lm-eval builds a task exactly as it does for a hub task; the dataset here is a local JSON file (the
hub is not reachable from this machine), loaded through the same `datasets` path.
"""

import json

import pytest
import yaml

from prunescope.tasks import check_tasks
from prunescope.offline import OFFLINE_VARIABLES
from prunescope.tasks.fetch import fetch_task, use_fetched_data

DOCS = [{"question": f"{i} + 1 =", "choices": [str(i + 1), str(i + 2)], "label": 0} for i in range(5)]


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    from lm_eval.tasks import TaskManager

    folder = tmp_path_factory.mktemp("tasks")
    (folder / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (folder / "tiny_sum.yaml").write_text(yaml.safe_dump({
        "task": "tiny_sum", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"validation": str(folder / "docs.jsonl")}},
        "output_type": "multiple_choice", "validation_split": "validation",
        "doc_to_text": "{{question}}", "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc"}],
    }))
    return TaskManager(include_path=str(folder), include_defaults=False)


def test_fetch_builds_the_task_and_describes_its_data(manager):
    manifest = fetch_task("tiny_sum", "multiple_choice", manager)
    assert manifest["task"] == "tiny_sum" and manifest["kind"] == "multiple_choice"
    leaf = manifest["leaves"]["tiny_sum"]
    assert leaf["dataset_path"] == "json" and leaf["splits"] == {"validation": len(DOCS)}
    assert manifest["datasets_cache"] and manifest["datasets_version"]


def test_fetch_refuses_a_task_of_another_kind(manager):
    with pytest.raises(ValueError, match="'tiny_sum' is configured as generative but lm-eval task 'tiny_sum' has "
                                         "output_type 'multiple_choice'"):
        fetch_task("tiny_sum", "generative", manager)


def test_evaluation_reads_the_fetched_cache_offline(tmp_path, monkeypatch):
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    use_fetched_data([{"task": "gsm8k", "datasets_cache": str(tmp_path)}])
    assert all(__import__("os").environ[v] == "1" for v in OFFLINE_VARIABLES)


def test_a_cache_the_node_cannot_see_is_named(tmp_path, monkeypatch):
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    missing = tmp_path / "not-shared"
    with pytest.raises(FileNotFoundError, match=f"'gsm8k' was fetched into {missing}.*HF_HOME"):
        use_fetched_data([{"task": "gsm8k", "datasets_cache": str(missing)}])
    assert not any(v in __import__("os").environ for v in OFFLINE_VARIABLES)


def test_fetched_hub_tasks_pass_offline_validation():
    config = {"source": "hub", "benchmarks": [{"name": "mmlu", "kind": "multiple_choice", "shots": 0},
                                              {"name": "gsm8k", "kind": "generative", "shots": 0}]}
    check_tasks(config, offline=True, fetched={"mmlu", "gsm8k"})
    with pytest.raises(Exception, match=r"tasks.benchmarks\[1\] \('gsm8k'\).*task_fetch"):
        check_tasks(config, offline=True, fetched={"mmlu"})
