"""Benchmark: CPU cost of the configured task evaluation per variant, against plain forward passes.

Not a test (pytest does not collect ``bench_*``). Run on the embedded default model:

    HF_HUB_OFFLINE=1 .venv/bin/python tests/benchmarks/bench_tasks.py [--config config/config.yaml] [--threads 1]

For each configured task it reports CPU seconds (this process; sandbox children excluded), the tokens
the model read, and the ratio to a plain batched forward pass over the same token sequences measured in
the same process (lm-eval's and prunescope's overhead; for generative tasks the decoding steps too).
The last line projects the whole default run: all tasks x all configured variants on 2 cores.
Budget (issue 7): all default tasks for all default variants <= 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from prunescope.loading import load_variant  # noqa: E402
from prunescope.tasks.data import write_task_data  # noqa: E402
from prunescope.tasks.outputs import run_settings, write_evaluation  # noqa: E402
from prunescope.tasks.runner import EvalSettings, TaskEntry, evaluate_tasks  # noqa: E402


@torch.no_grad()
def plain_forward_seconds(model, token_lists: list[list[int]], batch_size: int) -> float:
    """CPU seconds of right-padded batched forward passes over ``token_lists`` (sorted by length)."""
    token_lists = sorted(token_lists, key=len)
    started = time.process_time()
    for start in range(0, len(token_lists), batch_size):
        batch = token_lists[start:start + batch_size]
        ids = torch.zeros(len(batch), max(map(len, batch)), dtype=torch.long)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        model(ids)
    return time.process_time() - started


def sequences(path: str, kind: str, tokenizer) -> list[list[int]]:
    """The token sequences the model reads for a task's rows (options appended for multiple choice)."""
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    if kind == "multiple_choice":
        rows = duckdb.sql(f"SELECT prompt, options FROM '{path}'").fetchall()
        return [encode(prompt + " " + option) for prompt, options in rows for option in options]
    if kind == "generative":
        rows = duckdb.sql(f"SELECT DISTINCT doc_id, prompt, target FROM '{path}'").fetchall()
        return [encode(prompt) for _, prompt, _ in rows] + [encode(prompt + " " + target) for _, prompt, target in rows]
    rows = duckdb.sql(f"SELECT DISTINCT prompt FROM '{path}' UNION ALL SELECT DISTINCT target FROM '{path}'").fetchall()
    return [encode(text)[:255] for (text,) in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--model", default="resources/models/smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    tasks = config["tasks"]
    entries = [TaskEntry.from_config(entry) for entry in tasks["benchmarks"]]
    n_variants = len(dict.fromkeys(["dense", *config["variants"]]))
    model, tokenizer = load_variant(args.model, "dense", dtype="float32")
    settings = EvalSettings(batch_size=tasks.get("batch_size", 8), retrieval_max_tokens=tasks.get("retrieval", {}).get("max_tokens", 256))
    with tempfile.TemporaryDirectory() as folder:
        data = {e.name: f"{folder}/{e.name}.data.parquet" for e in entries}
        for name, path in data.items():
            write_task_data(name, path)
        total_cpu = 0.0
        print(f"{'task':30s} {'n':>4s} {'cpu_s':>7s} {'wall_s':>7s} {'tokens':>7s} {'plain_s':>7s} {'ratio':>6s}")
        for entry in entries:
            cpu, wall = time.process_time(), time.perf_counter()
            evaluation = evaluate_tasks(model, tokenizer, [entry], settings, data)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            path = f"{folder}/{entry.name}.parquet"
            write_evaluation(evaluation, [entry], model="bench", variant="dense", task_paths=[path], data_paths=data,
                             summary_path=f"{folder}/summary.parquet", raw_path=f"{folder}/raw.json",
                             raw_samples_path=f"{folder}/raw.jsonl.gz", settings=run_settings(settings))
            seqs = sequences(path, entry.kind, tokenizer)
            plain = plain_forward_seconds(model, seqs, settings.batch_size)
            total_cpu += cpu
            print(f"{entry.name:30s} {entry.limit or 0:4d} {cpu:7.1f} {wall:7.1f} {sum(map(len, seqs)):7d} {plain:7.1f} "
                  f"{cpu / plain:6.2f}", flush=True)
    print(f"per variant: {total_cpu:.0f} CPU s; {n_variants} variants on 2 cores: ~{total_cpu * n_variants / 2 / 60:.1f} min "
          f"(budget 20 min)")


if __name__ == "__main__":
    main()
