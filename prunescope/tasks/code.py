"""HumanEval and MBPP through lm-eval, with pass@1 computed by prunescope's sandbox.

lm-eval's code tasks score with Hugging Face ``evaluate``'s ``code_eval``, which is fetched from the
hub when the task's ``utils.py`` is imported and runs the programs in forked children of the
evaluating process. Here the task YAML is read without importing that module; its two functions are
replaced by equivalents (HumanEval's program = prompt + completion; MBPP's three fixed few-shot
examples, read from lm-eval's source as literals, not executed) and the metric by
:class:`SandboxScorer`. Prompts, stop sequences and test programs stay lm-eval's: the program run is
``prediction + "\\n" + reference``, as in ``code_eval``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from .sandbox import ExecutionResult, SandboxLimits, require_isolation, run_program

METRIC = "pass@1"


def program_source(prediction: str | list[str], reference: str) -> str:
    """The program that decides a sample: the (first) candidate followed by the task's tests."""
    candidate = prediction[0] if isinstance(prediction, (list, tuple)) else prediction
    return f"{candidate}\n{reference}"


class SandboxScorer:
    """lm-eval metric callable: 1.0 when the program passes its tests in the sandbox, else 0.0.

    Keeps every outcome, keyed by the program's source, so per-sample records can say why a program
    failed (timeout, memory, blocked network ...) and under which isolation it ran. Construction
    refuses (:class:`~prunescope.tasks.sandbox.SandboxUnavailableError`, naming what is missing) when
    the configured isolation level is not available, before any generation; a failure of the sandbox
    while scoring is that sample's status ``error``, never an exception into lm-eval.
    """

    __name__ = METRIC

    def __init__(self, limits: SandboxLimits):
        self.limits = limits
        self.isolation = require_isolation(limits.isolation)  # e.g. "full: bubblewrap 0.8.0 (...) + cgroup v1 (...)"
        self.outcomes: dict[str, ExecutionResult] = {}

    def __call__(self, references: list[str], predictions: list[Any], **_) -> float:
        (reference,), (prediction,) = references, predictions
        source = program_source(prediction, reference)
        if source not in self.outcomes:
            self.outcomes[source] = run_program(source, self.limits)
        return float(self.outcomes[source].passed)


def humaneval_programs(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval's HumanEval filter: the prompt (function signature + docstring) followed by the completion."""
    return [[doc["prompt"] + completion for completion in resp] for resp, doc in zip(resps, docs)]


def mbpp_fewshot_samples(lm_eval_tasks: Path) -> list[dict]:
    """The literal list returned by ``list_fewshot_samples`` in lm-eval's mbpp/utils.py (parsed, not run)."""
    tree = ast.parse((lm_eval_tasks / "mbpp" / "utils.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "list_fewshot_samples":
            returns = [stmt for stmt in node.body if isinstance(stmt, ast.Return)]
            return ast.literal_eval(returns[0].value)
    raise ValueError("lm-eval's mbpp/utils.py has no list_fewshot_samples(); this lm-eval version is not supported")


def sandboxed_config(name: str, config: dict[str, Any], scorer: SandboxScorer, lm_eval_tasks: Path) -> dict[str, Any]:
    """``config`` (loaded with functions unresolved) with the code-execution parts replaced."""
    config = dict(config, metric_list=[{"metric": scorer, "aggregation": "mean", "higher_is_better": True}])
    if name == "humaneval":
        (create_test,) = config["filter_list"]
        config["filter_list"] = [{"name": create_test["name"],
                                  "filter": [{"function": "custom", "filter_fn": humaneval_programs}]}]
    elif name == "mbpp":
        config["fewshot_config"] = dict(config["fewshot_config"], samples=mbpp_fewshot_samples(lm_eval_tasks))
    else:
        raise ValueError(f"code task {name!r} is not supported; supported: humaneval, mbpp")
    return config
