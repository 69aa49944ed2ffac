"""Benchmark: CPU cost of the configured task evaluation per variant, against plain forward passes.

Not a test (pytest does not collect ``bench_*``). Run on the embedded default model:

    HF_HUB_OFFLINE=1 .venv/bin/python tests/benchmarks/bench_tasks.py [--config config/config.yaml] [--threads 1]

For each configured task it reports CPU seconds (this process; sandbox children excluded), the tokens
the model read, and the ratio to a plain batched forward pass over the same token sequences measured in
the same process (lm-eval's and prunescope's overhead; for generative tasks the decoding steps too).
The last line projects the whole default run: all tasks x all configured variants on 2 cores.
Budget (issue 7): all default tasks for all default variants <= 20 minutes on 2 cores.

A second table scores each multiple-choice task's lm-eval requests twice in the same process, with stock
``HFLM`` at the configured batch size and with prunescope's :class:`SharedContextLM` at the same and at
the configured size, and prints the CPU seconds, their ratio and the largest log-likelihood difference.
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
from prunescope.tasks.harness import build_task  # noqa: E402
from prunescope.tasks.runner import EvalSettings, TaskEntry, evaluate_tasks  # noqa: E402
from prunescope.tasks.shared_context import SharedContextLM  # noqa: E402

STOCK_BATCH_SIZE = 8  # lm-eval's usual CPU setting, and the default config's before SharedContextLM


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


def loglikelihood_comparison(model, tokenizer, entries, data, batch_size: int) -> None:
    """Stock HFLM against SharedContextLM on the same requests of each multiple-choice task."""
    from lm_eval.models.huggingface import HFLM

    lms = {f"stock b{STOCK_BATCH_SIZE}": HFLM(pretrained=model, tokenizer=tokenizer, batch_size=STOCK_BATCH_SIZE),
           f"shared b{STOCK_BATCH_SIZE}": SharedContextLM(pretrained=model, tokenizer=tokenizer,
                                                          batch_size=STOCK_BATCH_SIZE),
           f"shared b{batch_size}": SharedContextLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)}
    print(f"\n{'loglikelihood requests':24s} {'n':>4s} " + " ".join(f"{name:>10s}" for name in lms)
          + f" {'ratio':>6s} {'max |dll|':>9s}")
    for entry in entries:
        if entry.kind != "multiple_choice":
            continue
        task = build_task(entry.name, "embedded", entry.shots, data[entry.name], limit=entry.limit)
        task.build_all_requests(limit=entry.limit, rank=0, world_size=1)
        seconds, answers = [], []
        for lm in lms.values():
            started = time.process_time()
            answers.append(lm.loglikelihood(list(task.instances), disable_tqdm=True))
            seconds.append(time.process_time() - started)
        worst = max(abs(a[0] - b[0]) for other in answers[1:] for a, b in zip(answers[0], other))
        print(f"{entry.name:24s} {len(task.instances):4d} " + " ".join(f"{s:10.1f}" for s in seconds)
              + f" {seconds[0] / seconds[-1]:5.2f}x {worst:9.1e}", flush=True)


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
        print(f"per variant: {total_cpu:.0f} CPU s; {n_variants} variants on 2 cores: "
              f"~{total_cpu * n_variants / 2 / 60:.1f} min (budget 20 min)")
        loglikelihood_comparison(model, tokenizer, entries, data, settings.batch_size)


if __name__ == "__main__":
    main()
