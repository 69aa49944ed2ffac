"""Bad task configuration fails at parse time with a message naming the problem and what is available."""

import pytest
import yaml

from prunescope.config import ConfigError, check_config, load_schema
from prunescope.tasks import TASKS, TaskConfigError, check_tasks
from prunescope.offline import hub_offline

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


ENTRY_DEFAULTS = {"limit": None, "shots": 0, "gold": True, "max_gen_toks": None}  # what the schema fills in


def tasks(*benchmarks, source="embedded"):
    """A tasks section as check_tasks receives it: validated by the schema, defaults filled."""
    return {"source": source, "benchmarks": [{**ENTRY_DEFAULTS, **b} for b in benchmarks]}


def arc(**extra):
    return {"name": "arc_easy", "kind": "multiple_choice", "limit": 10, **extra}


def problems(config, offline=True) -> str:
    with pytest.raises(TaskConfigError) as err:
        check_tasks(config, offline=offline)
    return str(err.value)


def test_the_default_config_is_valid_offline():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    check_tasks(tasks(*config["tasks"]["benchmarks"], source=config["tasks"]["source"]), offline=True)


def test_unknown_task_lists_what_is_available():
    message = problems(tasks(arc(), {"name": "hellaswagg", "kind": "multiple_choice"}))
    assert "tasks.benchmarks[1] ('hellaswagg')" in message and "not available offline" in message
    for name in TASKS:
        assert name in message
    assert "tasks.benchmarks[0]" not in message


def test_hub_task_while_offline_fails_and_lists_offline_tasks():
    for name, kind in (("hellaswag", "multiple_choice"), ("mmlu", "multiple_choice"), ("gsm8k", "generative")):
        message = problems(tasks({"name": name, "kind": kind}, source="hub"), offline=True)
        assert "HF_HUB_OFFLINE" in message and "tasks.source: embedded" in message and "arc_easy" in message
    # prunescope's own tasks read the snapshots, also with source: hub
    check_tasks(tasks({"name": "squad_retrieval", "kind": "retrieval"}, source="hub"), offline=True)


def test_kind_shots_duplicates_and_reserved_names():
    message = problems(tasks(
        arc(kind="generative"), arc(),
        {"name": "squad_retrieval", "kind": "retrieval", "shots": 2},
        {"name": "summary", "kind": "multiple_choice"},
    ))
    assert "is a multiple_choice task, not generative" in message
    assert "'arc_easy' is listed more than once" in message
    assert "retrieval takes no few-shot examples" in message
    assert "'summary' cannot be a task name" in message


def test_schema_rejects_bad_entries_before_the_task_check():
    schema = load_schema(ROOT / "config" / "schema.yaml")
    config = {"models": {"m": {"source": "embedded"}}, "variants": ["dense"],
              "tasks": {"source": "local", "benchmarks": [
                  {"name": "arc_easy", "kind": "multiple_choice", "limit": 0, "n_shots": 1},
                  {"name": "piqa", "kind": "ranking"}]}}
    with pytest.raises(ConfigError) as err:
        check_config(config, schema)
    message = str(err.value)
    assert "unknown key(s) 'n_shots'" in message and "tasks.benchmarks[0].limit" in message
    assert "tasks.benchmarks[1].kind: 'ranking' is not allowed; allowed: multiple_choice, generative, retrieval" in message
    assert "tasks.source: 'local' is not allowed; allowed: embedded, hub" in message


def test_offline_switch_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub_offline()


@pytest.mark.slow
def test_hub_names_are_checked_against_lm_eval_when_online():
    """Indexes lm-eval's task YAML files (about 15 s); nothing is downloaded."""
    message = problems(tasks({"name": "hellaswag_typo", "kind": "multiple_choice"},
                             {"name": "humaneval_plus", "kind": "generative"},
                             {"name": "lambada_openai", "kind": "generative"}, source="hub"), offline=False)
    assert "'hellaswag_typo'): not an lm-eval task or group; close matches:" in message and "hellaswag" in message
    assert "'humaneval_plus'): executes generated code; supported code tasks: humaneval, mbpp" in message
    assert "'lambada_openai'): lm-eval task has output_type 'loglikelihood' (not supported), not generative" in message


def test_code_tasks_need_the_configured_sandbox(monkeypatch):
    """A code task whose isolation is missing here is refused at parse time, naming what is missing."""
    from prunescope.tasks import sandbox_isolation

    monkeypatch.setattr(sandbox_isolation, "missing_for", lambda level: [] if level == "none" else ["no bwrap on PATH"])
    config = tasks({"name": "humaneval", "kind": "generative"})
    config["sandbox"] = {"isolation": "full"}
    message = problems(config)
    assert "tasks.sandbox.isolation: full is not available on this machine" in message and "no bwrap on PATH" in message
    assert "set tasks.sandbox.isolation: none" in message
    config["sandbox"] = {"isolation": "none"}
    check_tasks(config, offline=True)
