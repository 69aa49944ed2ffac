"""Benchmark: all metrics over N row pairs against the bare work of reading them in probability space.

Baseline, in the same process and on the same rows: for each chunk, ``softmax(h_ref @ Wᵀ)`` and
``softmax(h_var @ Wᵀ)`` — the two projections and the two softmaxes that any comparison of the dense
and variant distributions needs. Measured: :func:`prunescope.metrics.compute_metrics` (embedding,
logit and probability spaces at one temperature, plus a 4-option subspace, or 2-5 options per row with
``--ragged``). Target: ratio <= 1.5.

The rows have the spread of real ones (``--logit-std``, default 20): the layer-wise residuals of the
default model, projected through its head, have logits with a standard deviation of about 16 over the
vocabulary and 44 % of the vocabulary more than 87 below the top logit, where exp leaves its vectorised
path on CPU (see ``prunescope.metrics.fused.EXP_FLOOR``); rows of standard-normal logits never go there.

Each repeat times the baseline and the metrics back to back; the ratio printed is the median over
repeats of their quotient (on a machine shared with other jobs the load changes between repeats, and
a quotient of neighbours cancels it better than the quotient of two minima, which is printed too).

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_metrics.py --threads 1
    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_metrics.py --threads 1 --rows 256 --vocab 151936 --dim 896
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prunescope.metrics import Head, compute_metrics


def baseline(h_ref, h_var, weight, chunk_rows):
    for start in range(0, h_ref.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        torch.softmax(h_ref[rows] @ weight.T, dim=-1)
        torch.softmax(h_var[rows] @ weight.T, dim=-1)


def interleaved(repeats, *fns):
    """Wall and CPU time of each function per repeat, alternating them so that a busy machine slows both alike.

    On a machine shared with other jobs the wall time includes waiting for a core; the process CPU
    time does not, so its ratio is the steadier number there (with --threads 1 both measure the same work).
    """
    wall, cpu = [[] for _ in fns], [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall[i].append(time.perf_counter() - start_wall)
            cpu[i].append(time.process_time() - start_cpu)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--chunk-rows", type=int, default=128)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--logit-std", type=float, default=20.0, help="standard deviation of the dense logits")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ragged", action="store_true", help="2-5 options per row instead of 4 shared ones")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    device = torch.device(args.device)
    weight = torch.randn(args.vocab, args.dim, device=device) / args.dim**0.5 * args.logit_std
    h_ref = torch.randn(args.rows, args.dim, device=device)
    h_var = h_ref + 0.05 * torch.randn(args.rows, args.dim, device=device)
    option_ids = torch.tensor([10, 20, 30, 40], device=device)
    if args.ragged:  # 2 to 5 options per row, padded with -1 (OPTION_PAD)
        slot = torch.arange(5, device=device)
        counts = torch.arange(args.rows, device=device) % 4 + 2
        option_ids = torch.where(slot < counts[:, None], slot * 10 + 10, -1)
    head = Head(weight)

    with torch.no_grad():
        wall, cpu = interleaved(
            args.repeats,
            lambda: baseline(h_ref, h_var, weight, args.chunk_rows),
            lambda: compute_metrics(h_ref, h_var, head, args.temperatures, option_ids, chunk_rows=args.chunk_rows),
        )
    print(
        f"rows={args.rows} d={args.dim} V={args.vocab} T={args.temperatures} chunk={args.chunk_rows} "
        f"threads={args.threads} device={device} repeats={args.repeats} logit std={args.logit_std}"
    )
    for name, (base, full) in (("wall", wall), ("cpu", cpu)):
        print(f"{name:4s}: baseline (2 projections + 2 softmax) best {min(base):.3f} s, "
              f"compute_metrics best {min(full):.3f} s")
    median = {name: statistics.median(f / b for b, f in zip(*times)) for name, times in (("wall", wall), ("cpu", cpu))}
    best = {name: min(full) / min(base) for name, (base, full) in (("wall", wall), ("cpu", cpu))}
    print(f"compute_metrics: {args.rows / min(cpu[1]):.0f} rows per CPU-second (best repeat)")
    print(f"ratio of best times: {best['wall']:.2f}x wall, {best['cpu']:.2f}x cpu")
    print(f"ratio (median of repeats): {median['wall']:.2f}x wall, {median['cpu']:.2f}x cpu (target <= 1.5)")


if __name__ == "__main__":
    main()
