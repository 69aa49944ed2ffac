"""Benchmark weight-only quantisation on the embedded default model (SmolLM2-135M-Instruct).

For dense, RTN, GPTQ and AWQ at 4 and 3 bits, beside Wanda and SparseGPT at 50 % (run by
``bench_pruning``'s own code), prints:

- perplexity on held-out text (DROP passages; calibration is CoQA stories), and its change from dense,
- quantisation (or pruning) time divided by one plain forward pass of the model over the same calibration
  set, both measured in the same process, wall and process CPU time,
- peak memory of the process (each variant runs in its own child process).

The group size defaults to 64: SmolLM2-135M's hidden width 576 is not a multiple of 128, and a group
must divide every linear's input width (576 and 1536 here; 64 divides both).

    nice .venv/bin/python tests/benchmarks/bench_quantization.py --n-samples 16 --seqlen 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from tests.benchmarks import bench_pruning  # noqa: E402  (perplexity, timing, model and data: one copy)

QUANT = [f"quant-{m}-w{b}" for b in (4, 3) for m in ("rtn", "gptq", "awq")]
PRUNE = ["wanda-unstructured50", "sparsegpt-unstructured50"]


def run_quant_variant(args) -> dict:
    """One quantised variant in this process: baseline forward, quantise, perplexity, peak memory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunescope.calibration import load_documents, sample_windows
    from prunescope.quantization import quantize_model
    from prunescope.variants import parse_variant

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folder = bench_pruning.model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = sample_windows(load_documents("embedded"), tokenizer, args.n_samples, args.seqlen, seed=0)
    before = bench_pruning.forward_time(model.to(device), ids, device, args.batch_size)
    model.to("cpu")  # quantisation moves one layer at a time to the device
    spec = parse_variant(args.variant)
    result = {}
    row = {"variant": args.variant}
    row["prune_s"], row["prune_cpu_s"] = bench_pruning.timed(
        lambda: result.update(out=quantize_model(model, spec, ids, device, batch_size=args.batch_size,
                                                 gptq_act_order=args.act_order)), device)
    after = bench_pruning.forward_time(model.to(device), ids, device, args.batch_size)
    row["forward_s"], row["forward_cpu_s"] = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    rows = result["out"].rows
    row["weight_error"] = sum(r["weight_error"] for r in rows) / len(rows)
    row["output_error"] = sum(r["output_error"] for r in rows) / len(rows)
    blocks = bench_pruning.heldout_blocks(tokenizer, args.eval_blocks, args.seqlen)
    row["ppl"] = bench_pruning.perplexity(model.to(device), blocks, device, args.batch_size)
    row["peak_mb"] = bench_pruning.peak_memory_mb(device)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_pruning.add_common_arguments(parser)
    parser.add_argument("--group", type=int, default=64, help="quantisation group size (0 = per output channel)")
    parser.add_argument("--act-order", action="store_true", help="GPTQ act-order")
    parser.add_argument("--variants", nargs="+", default=None)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # child mode: run one variant, print JSON
    args = parser.parse_args()
    if args.variant:
        run = run_quant_variant if args.variant.startswith("quant-") else bench_pruning.run_variant
        print(json.dumps(run(args)))
        return

    group = f"g{args.group}" if args.group else ""
    variants = args.variants or ["dense"] + [f"{v}{group}" for v in QUANT] + PRUNE
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bench_pruning.model_dir()  # build once, before the children start
    print(f"model {bench_pruning.model_dir()}; calibration {args.n_samples} x {args.seqlen} tokens (CoQA); "
          f"perplexity on {args.eval_blocks} x {args.seqlen} held-out DROP tokens; {args.threads} threads; "
          f"gptq act-order {args.act_order}")
    print(f"{'variant':26s} {'ppl':>8s} {'vs dense':>9s} {'time s':>7s} {'fwd s':>6s} {'wall x':>7s} {'cpu x':>6s} "
          f"{'|dW|/|W|':>9s} {'|dWX|/|WX|':>11s} {'peak MB':>8s}")
    dense_ppl = None
    for variant in variants:
        command = [sys.executable, __file__, "--variant", variant] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("variant", "variants", "act_order")
        ] + (["--act-order"] if args.act_order else [])
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        if done.returncode:
            print(f"{variant}: failed\n{done.stderr[-3000:]}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        if variant == "dense":
            dense_ppl = row["ppl"]
        change = f"{100 * (row['ppl'] / dense_ppl - 1):+8.1f}%" if dense_ppl else f"{'-':>9s}"
        work = row.get("prune_s")
        wall_x = f"{work / row['forward_s']:7.2f}" if work is not None else f"{'-':>7s}"
        cpu_x = f"{row['prune_cpu_s'] / row['forward_cpu_s']:6.2f}" if work is not None else f"{'-':>6s}"
        errors = (f"{row['weight_error']:9.4f} {row['output_error']:11.4f}" if "weight_error" in row
                  else f"{'-':>9s} {'-':>11s}")
        print(f"{variant:26s} {row['ppl']:8.2f} {change} {work or 0:7.1f} {row['forward_s']:6.1f} {wall_x} {cpu_x} "
              f"{errors} {row['peak_mb']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
