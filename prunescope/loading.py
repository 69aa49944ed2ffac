"""Load the dense model or any variant of it, ready to run: the one entry point every later stage uses.

- ``dense``: the checkpoint in ``model_dir``;
- intra-layer (``wanda-unstructured50``, ``sparsegpt-2of4``, ...): the pruned checkpoint saved by the
  prune stage in ``variant_dir/model`` (zeros stored densely), with the tokenizer of ``model_dir``;
- inter-layer (``drop-attn-4``, ...): the dense checkpoint with the drop plan in ``variant_dir/drop_spec.json``
  applied by forward overrides (:func:`prunescope.dropping.apply_drops`), after checking that the plan was
  made for this model and this variant. The handle is reachable as ``model._prunescope_drop_handle``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from prunescope.device import resolve_device, resolve_dtype
from prunescope.dropping.hooks import apply_drops
from prunescope.dropping.plan_file import PLAN_FILE, model_fingerprint, read_plan
from prunescope.variants import DenseSpec, DropSpec, parse_variant

PathLike = str | os.PathLike


def load_model(model_dir: PathLike, dtype=None, device="cpu", attn_implementation: str | None = None):
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` from ``model_dir``, in eval mode on ``device``.

    ``dtype``: a torch dtype, a name ('float32', 'bfloat16', 'float16'), or None for the checkpoint's own.
    """
    from transformers import AutoTokenizer

    model = _load_causal_lm(model_dir, dtype, device, attn_implementation)
    return model, AutoTokenizer.from_pretrained(_existing_dir(model_dir, "model_dir"))


def load_variant(model_dir: PathLike, variant: str, variant_dir: PathLike | None = None, *, dtype=None,
                 device="cpu", attn_implementation: str | None = None, model_key: str | None = None):
    """(model, tokenizer) for ``variant`` of the model in ``model_dir``; see the module docstring.

    ``model_key`` (the config key of the model), when given, must also match a drop plan's fingerprint.
    """
    from transformers import AutoTokenizer

    parsed = parse_variant(variant)
    if isinstance(parsed, DenseSpec):
        return load_model(model_dir, dtype, device, attn_implementation)
    if variant_dir is None:
        raise ValueError(f"variant {variant!r} needs variant_dir (results/{{model}}/{variant}/)")
    variant_dir = _existing_dir(variant_dir, f"variant_dir of {variant!r}")

    if isinstance(parsed, DropSpec):
        # Read and check the (small) plan file before loading any weights.
        plan = read_plan(variant_dir / PLAN_FILE, variant, _config(model_dir), model_key)
        model, tokenizer = load_model(model_dir, dtype, device, attn_implementation)
        apply_drops(model, plan)
        return model, tokenizer

    pruned_dir = _existing_dir(variant_dir / "model", f"checkpoint of {variant!r}")
    dense_print, pruned_print = model_fingerprint(_config(model_dir)), model_fingerprint(_config(pruned_dir))
    if dense_print != pruned_print:
        raise ValueError(f"pruned checkpoint {pruned_dir} ({pruned_print}) does not match the dense model "
                         f"in {model_dir} ({dense_print})")
    model = _load_causal_lm(pruned_dir, dtype, device, attn_implementation)
    return model, AutoTokenizer.from_pretrained(Path(model_dir))


def _load_causal_lm(path: PathLike, dtype, device, attn_implementation):
    from transformers import AutoModelForCausalLM

    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    kwargs = {"dtype": _dtype(dtype)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if device.type == "cuda":
        # Stream the weights straight onto the GPU: a 7B model in fp32 would otherwise pass through ~30 GB
        # of host memory, more than a cluster job asks for.
        kwargs["device_map"] = str(device)
    model = AutoModelForCausalLM.from_pretrained(_existing_dir(path, "model_dir"), **kwargs)
    return model.to(device).eval()


def _config(path: PathLike):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(_existing_dir(path, "model_dir"))


def _dtype(dtype):
    if dtype is None:
        return "auto"
    return resolve_dtype(dtype) if isinstance(dtype, str) else dtype


def _existing_dir(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: {path} is not a directory")
    return path
