"""The dense model's output head read straight from its checkpoint, without loading the model.

The metrics stage needs only the head (and, with ``apply_final_norm``, the final norm): at paper scale
that is ~1 GB of a ~15 GB checkpoint. :func:`load_head` builds the model skeleton from ``config.json``
on the ``meta`` device (no memory, no weights), finds the head and the final norm through the project's
adapter (:func:`prunescope.adapter.model_parts`, so the same models are accepted or rejected as by
:func:`~prunescope.metrics.long_table.head_from_model`), and reads exactly their tensors from the
safetensors file(s) (``model.safetensors``, or the shards of ``model.safetensors.index.json``).

Which stored tensor is the head's weight follows ``transformers``' own loading: the head's own name
(``lm_head.weight``) when the checkpoint stores it, else, with tied embeddings, the tensor it is tied
to (``model.embed_tokens.weight``). A head without any stored tensor is an error (``from_pretrained``
would initialise it at random).

Building the skeleton imports ``transformers``' modeling code, 3–4 s of every metrics job on a small
machine. So the ``model`` rule also stores the head as the metrics read it without the final norm
(:func:`write_head_cache`: ``prunescope_head.safetensors`` in the checkpoint folder, fp32 values in the
narrowest dtype that holds them exactly, scale and soft-cap in its metadata), and :func:`load_head`
reads that file when it is there and the final norm is not asked for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from prunescope.adapter import model_parts
from prunescope.io import atomic_path
from prunescope.metrics.long_table import head_from_parts
from prunescope.metrics.spaces import Head

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
HEAD_CACHE = "prunescope_head.safetensors"  # written by write_head_cache; never a model file (transformers ignores it)


class MissingHeadTensorError(KeyError):
    """A tensor the head needs is not in the checkpoint."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def load_head(model_dir: str | os.PathLike, apply_final_norm: bool = False, use_cache: bool = True) -> Head:
    """The output head of the checkpoint in ``model_dir`` in fp32, as ``head_from_model(load_model(...))``.

    Reads only the head's tensors (plus the final norm's with ``apply_final_norm``); every needed
    tensor is located before any is read, and a missing one raises :class:`MissingHeadTensorError`
    naming the file(s) searched and the tensor name(s) tried. Without the final norm, the head stored by
    :func:`write_head_cache` is read when ``model_dir`` has one (``use_cache=False``: never).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model_dir: {model_dir} is not a directory")
    if use_cache and not apply_final_norm and (model_dir / HEAD_CACHE).is_file():
        return _read_head_cache(model_dir / HEAD_CACHE)
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    parts = model_parts(skeleton)
    modules = {"head": parts.head, **({"norm": parts.final_norm} if apply_final_norm else {})}
    names = _stored_names(skeleton, modules)

    where = _tensor_files(model_dir)
    chosen = {}  # (module key, local name) -> checkpoint name
    for (key, local), candidates in names.items():
        found = next((name for name in candidates if name in where), None)
        if found is None:
            files = sorted({str(model_dir / f) for f in where.values()}) or [str(model_dir)]
            what = "output head" if key == "head" else "final norm"
            raise MissingHeadTensorError(
                f"{', '.join(files)}: no tensor {' or '.join(map(repr, candidates))} (the {what}'s {local!r})"
            )
        chosen[(key, local)] = found
    tensors = _read(model_dir, {name: where[name] for name in chosen.values()})

    def state(key: str) -> dict[str, Tensor]:
        return {local: tensors[name] for (k, local), name in chosen.items() if k == key}

    head_state = state("head")
    weight = head_state["weight"].float()
    bias = head_state["bias"].float() if "bias" in head_state else None
    norm = _materialise(parts.final_norm, state("norm")) if apply_final_norm else None
    return head_from_parts(weight, bias, norm, config)


def write_head_cache(model_dir: str | os.PathLike) -> Path:
    """Store the head of the checkpoint in ``model_dir`` (without its final norm) where :func:`load_head`
    reads it first; each tensor in the narrowest of bf16 / fp16 / fp32 that gives back its fp32 values."""
    model_dir = Path(model_dir)
    head = load_head(model_dir, apply_final_norm=False, use_cache=False)
    tensors = {"weight": _exact_narrow(head.weight)}
    if head.bias is not None:
        tensors["bias"] = _exact_narrow(head.bias)
    metadata = {"logit_scale": repr(head.logit_scale), "softcap": "" if head.softcap is None else repr(head.softcap)}
    with atomic_path(model_dir / HEAD_CACHE) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return model_dir / HEAD_CACHE


def _exact_narrow(tensor: Tensor) -> Tensor:
    for dtype in (torch.bfloat16, torch.float16):
        narrow = tensor.to(dtype)
        if torch.equal(narrow.float(), tensor):
            return narrow.contiguous()
    return tensor.contiguous()


def _read_head_cache(path: Path) -> Head:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata()
        weight = f.get_tensor("weight").float()
        bias = f.get_tensor("bias").float() if "bias" in f.keys() else None
    softcap = float(metadata["softcap"]) if metadata["softcap"] else None
    return Head(weight, bias, None, float(metadata["logit_scale"]), softcap)


def _stored_names(model: nn.Module, modules: dict[str, nn.Module]) -> dict[tuple[str, str], list[str]]:
    """For each (module key, local state-dict name): the checkpoint names to try, the module's own first.

    Other names are those of tensors shared with it (tied embeddings: the head's weight is also
    ``model.embed_tokens.weight``); the own name comes first because ``transformers`` uses a stored
    ``lm_head.weight`` even when the config ties it (it then unties the two if they differ).
    """
    module_names = {id(m): name for name, m in model.named_modules(remove_duplicate=False)}
    full = model.state_dict(keep_vars=True)  # persistent parameters and buffers, shared ones under each name
    aliases: dict[int, list[str]] = {}
    for name, tensor in full.items():
        aliases.setdefault(id(tensor), []).append(name)
    result = {}
    for key, module in modules.items():
        prefix = module_names[id(module)]
        for local, tensor in module.state_dict(keep_vars=True).items():
            own = f"{prefix}.{local}" if prefix else local
            result[(key, local)] = [own, *(n for n in aliases.get(id(tensor), []) if n != own)]
    return result


def _tensor_files(model_dir: Path) -> dict[str, str]:
    """Tensor name -> file name (relative to ``model_dir``) of the checkpoint's safetensors."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        return dict(json.loads(index.read_text())["weight_map"])
    single = model_dir / SINGLE_FILE
    if single.is_file():
        with safe_open(str(single), framework="pt", device="cpu") as f:
            return dict.fromkeys(f.keys(), SINGLE_FILE)
    raise FileNotFoundError(f"{model_dir}: neither {SINGLE_FILE} nor {INDEX_FILE}; the head is read from safetensors")


def _read(model_dir: Path, located: dict[str, str]) -> dict[str, Tensor]:
    """Exactly the tensors in ``located`` (name -> file), each file opened once."""
    by_file: dict[str, list[str]] = {}
    for name, file in located.items():
        by_file.setdefault(file, []).append(name)
    tensors = {}
    for file, wanted in by_file.items():
        path = model_dir / file
        with safe_open(str(path), framework="pt", device="cpu") as f:
            stored = set(f.keys())
            for name in wanted:
                if name not in stored:  # an index that lists a tensor its shard lacks
                    raise MissingHeadTensorError(f"{path}: no tensor {name!r} (listed in {model_dir / INDEX_FILE})")
                tensors[name] = f.get_tensor(name)
    return tensors


def _materialise(module: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """``module`` (on the meta device) on the CPU in fp32 with ``state`` loaded, in eval mode, frozen."""
    non_persistent = [
        f"{prefix}.{name}".lstrip(".")
        for prefix, sub in module.named_modules()
        for name in sub._non_persistent_buffers_set
        if sub._buffers.get(name) is not None
    ]
    if non_persistent:
        # Not in the checkpoint, and to_empty() would leave them uninitialised.
        raise ValueError(f"{type(module).__name__} has computed buffers {non_persistent}; cannot rebuild it "
                         "from the checkpoint alone")
    module = module.to_empty(device="cpu").float()
    module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return module.eval().requires_grad_(False)
