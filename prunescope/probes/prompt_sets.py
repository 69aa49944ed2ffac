"""Probe sets on disk: the prompts every probe of a (model, probe set) runs on, tokenized once.

The prompt-set file (``results/{model}/prompts/{probe_set}.parquet``) holds, per prompt, ``prompt_id, kind,
text, answer, input_ids`` and, for multiple choice, ``n_options``, ``option_tokens`` (the id of each option
letter at the answer position of this exact rendered prompt, :mod:`prunescope.probes.options`) and
``option_form`` (``bare`` | ``spaced``); non-MC rows carry 0, ``[]`` and ``""``. Its settings (kind, n, seed,
benchmarks, chat template) go into the metadata, so each probe table can be read back to the exact text
and tokens it was computed on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from prunescope.io import write_parquet
from prunescope.probes.generation import Trajectory
from prunescope.probes.options import option_letters, option_token_ids
from prunescope.probes.prompts import build_probe_set, render_prompt, rendered_text

@dataclass(frozen=True)
class PromptSet:
    """One prompt-set file, keyed by ``prompt_id`` in file order."""

    kind: str
    prompts: dict[str, list[int]]
    texts: dict[str, str]
    answers: dict[str, str]
    option_tokens: dict[str, list[int]] = field(default_factory=dict)
    option_forms: dict[str, str] = field(default_factory=dict)
    path: str = ""

    @property
    def ids(self) -> list[str]:
        return list(self.prompts)

    def subspace_options(self) -> tuple[dict[str, list[int]], dict[str, str]]:
        """(prompt_id -> option ids, prompt_id -> form) for the subspace probe; every prompt must have them."""
        missing = [prompt_id for prompt_id in self.prompts if prompt_id not in self.option_tokens]
        if missing:
            raise ValueError(
                f"{self.path}: no option tokens for prompts {missing[:5]} (the subspace probe needs a "
                f"multiple_choice set, kind here {self.kind!r}; a file written before option tokens were "
                "stored must be deleted so the probe_prompts rule rewrites it)"
            )
        return self.option_tokens, self.option_forms


def prompt_set_table(tokenizer, set_config: dict, chat_template: bool) -> pa.Table:
    """Draw the set (``kind, n, seed``, optional ``benchmarks``; other keys, such as which probes run on
    it, are not the file's business), render and tokenize every prompt, and read each MC prompt's option
    tokens."""
    items = build_probe_set(set_config["kind"], set_config["n"], set_config.get("seed", 0),
                            benchmarks=set_config.get("benchmarks"))
    columns = {name: [] for name in ("prompt_id", "kind", "text", "answer", "input_ids", "n_options",
                                     "option_tokens", "option_form")}
    for item in items:
        input_ids = render_prompt(tokenizer, item["text"], chat_template)
        options = _options(tokenizer, item, chat_template) if "options" in item else None
        for name, value in (
            ("prompt_id", item["prompt_id"]), ("kind", item["kind"]), ("text", item["text"]),
            ("answer", item.get("answer", "")), ("input_ids", input_ids),
            ("n_options", len(options.ids) if options else 0),
            ("option_tokens", list(options.ids) if options else []),
            ("option_form", options.form if options else ""),
        ):
            columns[name].append(value)
    return pa.table({
        **columns,
        "input_ids": pa.array(columns["input_ids"], pa.list_(pa.int32())),
        "n_options": pa.array(columns["n_options"], pa.int32()),
        "option_tokens": pa.array(columns["option_tokens"], pa.list_(pa.int32())),
    })


def write_prompt_set(path: str | os.PathLike, tokenizer, set_config: dict, chat_template: bool) -> pa.Table:
    table = prompt_set_table(tokenizer, set_config, chat_template)
    write_parquet(table, path, {**set_config, "chat_template": chat_template})
    return table


def load_prompt_set(path: str | os.PathLike) -> PromptSet:
    """The :class:`PromptSet` of a prompt-set file (files written before option tokens were stored read
    with empty ``option_tokens`` / ``option_forms``)."""
    rows = pq.read_table(path).to_pylist()
    kinds = {row["kind"] for row in rows}
    if len(kinds) != 1:
        raise ValueError(f"{path}: a probe set has one kind, found {sorted(kinds)}")
    with_options = [row for row in rows if row.get("option_tokens")]
    return PromptSet(
        kind=kinds.pop(),
        prompts={row["prompt_id"]: list(row["input_ids"]) for row in rows},
        texts={row["prompt_id"]: row["text"] for row in rows},
        answers={row["prompt_id"]: row["answer"] for row in rows},
        option_tokens={row["prompt_id"]: list(row["option_tokens"]) for row in with_options},
        option_forms={row["prompt_id"]: row["option_form"] for row in with_options},
        path=str(path),
    )


def read_prompt_set(path: str | os.PathLike) -> tuple[dict[str, list[int]], dict[str, str], str]:
    """(prompt_id -> input ids, prompt_id -> gold answer, kind): the short form of :func:`load_prompt_set`."""
    prompt_set = load_prompt_set(path)
    return prompt_set.prompts, prompt_set.answers, prompt_set.kind


def read_trajectories(path: str | os.PathLike) -> dict[str, Trajectory]:
    """The dense reference trajectories stored by the dense generation probe (``mode = 'reference'``)."""
    table = pq.read_table(path, columns=["prompt_id", "step", "mode", "token_ref", "h_ref"])
    frame = table.to_pandas().sort_values(["prompt_id", "step"], kind="stable")
    if set(frame["mode"]) != {"reference"}:
        raise ValueError(f"{path}: not a dense reference table (modes {sorted(set(frame['mode']))})")
    trajectories = {}
    for prompt_id, group in frame.groupby("prompt_id", sort=False):
        hidden = torch.tensor(list(map(list, group["h_ref"])), dtype=torch.float32)
        trajectories[prompt_id] = Trajectory(prompt_id, [int(t) for t in group["token_ref"]], hidden)
    return trajectories


def _options(tokenizer, item: dict, chat_template: bool):
    """The option tokens of one MC item at the answer position of the text :func:`render_prompt` encodes."""
    rendered, add_special_tokens = rendered_text(tokenizer, item["text"], chat_template)
    try:
        options = option_token_ids(tokenizer, rendered, option_letters(len(item["options"])), add_special_tokens)
    except ValueError as err:
        raise ValueError(f"probe prompt {item['prompt_id']}: {err}") from None
    if item["answer"] not in options.letters:
        raise ValueError(f"probe prompt {item['prompt_id']}: answer {item['answer']!r} is not one of {options.letters}")
    return options
