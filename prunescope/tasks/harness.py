"""lm-evaluation-harness task objects for the configured tasks, and the teacher-forced gold companion.

A task listed in :data:`prunescope.tasks.registry.TASKS` is built from its lm-eval definition (the
installed harness's YAML, or prunescope's own config dict); with ``source: embedded`` (and always for
prunescope's own tasks) its documents come from the converted snapshot file instead of the hub. Any
other name is left to lm-eval's ``TaskManager`` (hub data; groups such as ``mmlu`` included).

The gold companion of a generative task scores, on exactly the prompts the generation run used
(few-shot examples and all), the log-likelihood of the gold answer under teacher forcing and whether
that answer is the model's greedy continuation: a single-step score, like multiple choice.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .code import SandboxScorer, sandboxed_config
from .data import read_task_data
from .registry import TASKS

GOLD_SUFFIX = "__gold"
PROMPT_FIELD, GOLD_FIELD = "prunescope_prompt", "prunescope_gold"


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def definition(name: str) -> dict[str, Any]:
    """The lm-eval config of a registered task, before data overrides (code-task functions unresolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    spec = TASKS[name]
    if spec.own_config is not None:  # a copy: lm-eval updates generation settings in place
        return copy.deepcopy(spec.own_config)
    config = load_yaml(lm_eval_tasks_dir() / spec.lm_eval_yaml, resolve_func=not spec.code)
    for key in ("tag", "group"):
        config.pop(key, None)
    return config


def with_local_data(config: dict[str, Any], data_path: str | Path, split: str, keep: int | None = None) -> dict[str, Any]:
    """``config`` reading its documents from a converted file: evaluated on ``split``, few-shot
    examples from the same split (lm-eval leaves the evaluated document out) unless the task has
    fixed few-shot samples. ``keep``: only the first ``keep`` documents are loaded."""
    data_path = str(data_path)
    fixed_fewshot = (config.get("fewshot_config") or {}).get("samples") is not None

    def documents(**_):
        rows = read_task_data(data_path)
        return _dataset_dict({split: rows.select(range(min(keep, len(rows)))) if keep is not None else rows})

    return dict(
        config,
        dataset_path=data_path, dataset_name=None, dataset_kwargs=None, custom_dataset=documents,
        training_split=None, validation_split=split if split == "validation" else None,
        test_split=split if split == "test" else None, fewshot_split=None if fixed_fewshot else split,
    )


def build_task(name: str, source: str, shots: int, data_path: str | Path | None = None,
               scorer: SandboxScorer | None = None, limit: int | None = None):
    """The lm-eval ``ConfigurableTask`` of registered task ``name`` (see the module docstring).

    ``limit``: lm-eval evaluates the first ``limit`` documents; without few-shot examples (drawn from
    the whole split) only those are loaded, which spares per-document preprocessing of the rest
    (HellaSwag: 10k documents, seconds per variant) and changes nothing else.
    """
    from lm_eval.api.task import ConfigurableTask

    spec = TASKS[name]
    config = definition(name)
    if spec.code:
        if scorer is None:
            raise ValueError(f"{name} executes generated code: pass a SandboxScorer")
        config = sandboxed_config(name, config, scorer, lm_eval_tasks_dir())
    if source == "embedded" or spec.own_config is not None:
        if data_path is None:
            raise ValueError(f"{name}: the offline data file (resources/benchmarks/...) is required")
        config = with_local_data(config, data_path, spec.snapshot.split, keep=limit if shots == 0 else None)
    config["num_fewshot"] = shots
    return ConfigurableTask(config=config)


def gold_task(name: str, samples: list[dict], task, gold_template: str | None):
    """The teacher-forced companion of generative ``task``: one loglikelihood request per sample of the
    generation run, with the same prompt and the task's target delimiter before the gold answer.

    Document i of the companion is ``samples[i]`` (lm-eval's ``doc_id`` there says which document).
    """
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.utils import apply_template

    import datasets

    rows = []
    for sample in samples:
        (context, _), *_ = sample["arguments"]
        gold = apply_template(gold_template, sample["doc"]) if gold_template else _first(task.doc_to_target(sample["doc"]))
        # lm-eval puts no delimiter before a loglikelihood target: add the generation task's own.
        rows.append({PROMPT_FIELD: context, GOLD_FIELD: task.config.target_delimiter + str(gold)})

    table = datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({PROMPT_FIELD: [], GOLD_FIELD: []})
    config = {
        "task": name + GOLD_SUFFIX, "output_type": "loglikelihood",
        "custom_dataset": lambda **_: _dataset_dict({"test": table}), "dataset_path": f"{name} prompts",
        "test_split": "test", "num_fewshot": 0, "description": "",
        "doc_to_text": PROMPT_FIELD, "doc_to_target": GOLD_FIELD,
        "process_results": gold_results,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "loglik", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "gold_of": name},
    }
    return ConfigurableTask(config=config)


def gold_results(doc, results) -> dict[str, float]:
    """Per-sample gold scores: is the gold answer the greedy continuation; its summed log-likelihood."""
    ((loglik, is_greedy),) = results
    return {"acc": float(is_greedy), "loglik": float(loglik)}


def _first(target):
    return target[0] if isinstance(target, (list, tuple)) else target


def _dataset_dict(splits):
    import datasets

    return datasets.DatasetDict(splits)
