"""Probe sets on disk: the prompts every probe of a (model, probe set) runs on, tokenized once.

The prompt-set file (``results/{model}/prompts/{probe_set}.parquet``) holds ``prompt_id, kind,
text, answer, input_ids`` and its settings (kind, n, seed, chat template), so each probe table can be read
back to the exact text it was computed on.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from prunescope.io import write_parquet
from prunescope.probes.generation import Trajectory
from prunescope.probes.prompts import build_probe_set, tokenize_probe_set


def write_prompt_set(path: str | os.PathLike, tokenizer, set_config: dict, chat_template: bool) -> pa.Table:
    items = build_probe_set(set_config["kind"], set_config["n"], set_config["seed"])
    ids = tokenize_probe_set(tokenizer, items, chat_template)
    table = pa.table({
        "prompt_id": [item["prompt_id"] for item in items],
        "kind": [item["kind"] for item in items],
        "text": [item["text"] for item in items],
        "answer": [item.get("answer", "") for item in items],
        "input_ids": pa.array([ids[item["prompt_id"]] for item in items], pa.list_(pa.int32())),
    })
    write_parquet(table, path, {**set_config, "chat_template": chat_template})
    return table


def read_prompt_set(path: str | os.PathLike) -> tuple[dict[str, list[int]], dict[str, str], str]:
    """(prompt_id -> input ids, prompt_id -> gold answer, kind) of a prompt-set file."""
    rows = pq.read_table(path).to_pylist()
    kinds = {row["kind"] for row in rows}
    if len(kinds) != 1:
        raise ValueError(f"{path}: a probe set has one kind, found {sorted(kinds)}")
    prompts = {row["prompt_id"]: list(row["input_ids"]) for row in rows}
    answers = {row["prompt_id"]: row["answer"] for row in rows}
    return prompts, answers, kinds.pop()


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
