"""Checks at parse time for the bad input the config schema cannot see (they need the model's shapes or
the file system), so that a dry run fails in seconds instead of a job failing later.

- a ``source: path`` model whose folder does not exist or holds no ``config.json``;
- a drop count k at or above the model's layer count (the largest allowed k is layers − 1);
- an N:M pattern or a quantisation group size that does not divide the width of the layers it applies to;
- a probe set that asks for the subspace probe, or for benchmarks, without being multiple choice.

A model's shapes come from its checkpoint's config.json when one is on disk, from the ``architecture``
of a ``random`` model, or from the embedded GGUF file's header; a hub model that is not downloaded yet is
checked by the jobs instead. Each problem is one line naming the key and what is allowed.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunescope.config import ConfigError
from prunescope.targets import probes_of_set
from prunescope.variants import parse_variant

# GGUF metadata keys -> transformers config keys (the embedded model is a Llama).
_GGUF_KEYS = {"llama.block_count": "num_hidden_layers", "llama.embedding_length": "hidden_size",
              "llama.feed_forward_length": "intermediate_size"}
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def check_run_inputs(config: Mapping[str, Any], models_root: str | Path = "resources/models") -> None:
    """Raise :class:`ConfigError` with one line per problem found; ``config`` is schema-validated."""
    problems = []
    for name, entry in config["models"].items():
        problems += _check_path_source(name, entry)
    for name, entry in config["models"].items():
        if not any(p.startswith(f"models.{name}.") for p in problems):
            shapes = model_shapes(name, entry, models_root)
            if shapes is not None:
                problems += _check_variants_fit(name, shapes, config["variants"])
    for set_name, set_config in config["probes"]["sets"].items():
        if set_config["kind"] == "multiple_choice":
            continue
        if "subspace" in probes_of_set(set_config):
            problems.append(f"probes.sets.{set_name}.probes: 'subspace' needs kind multiple_choice, "
                            f"not {set_config['kind']!r}; allowed for this set: layerwise, generation")
        if "benchmarks" in set_config:
            problems.append(f"probes.sets.{set_name}.benchmarks: only multiple_choice sets draw from benchmarks; "
                            f"a {set_config['kind']} set takes kind, n, seed and probes")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _check_path_source(name: str, entry: Mapping[str, Any]) -> list[str]:
    if entry["source"] != "path":
        return []
    folder = Path(entry["path"]).expanduser()
    if not folder.is_dir():
        return [f"models.{name}.path: {str(folder)!r} is not a folder; allowed: a local checkpoint folder with config.json"]
    if not (folder / "config.json").is_file():
        return [f"models.{name}.path: {str(folder)!r} has no config.json; allowed: a Hugging Face checkpoint folder"]
    return []


def model_shapes(name: str, entry: Mapping[str, Any], models_root: str | Path) -> dict[str, int] | None:
    """num_hidden_layers, hidden_size and intermediate_size of a model, or None when not knowable yet."""
    candidates = [Path(models_root) / name / "config.json"]
    if entry["source"] == "path":
        candidates.append(Path(entry["path"]).expanduser() / "config.json")
    found = next((path for path in candidates if path.is_file()), None)
    if found is not None:
        return _shape_keys(json.loads(found.read_text()))
    if entry["source"] == "random":
        return _shape_keys(entry["architecture"])
    if entry["source"] == "embedded":
        from prunescope.models import embedded_gguf_path

        return _shape_keys(gguf_metadata(embedded_gguf_path(), _GGUF_KEYS))
    return None


def _shape_keys(config: Mapping[str, Any]) -> dict[str, int]:
    config = config.get("text_config", config)  # multimodal wrappers nest the language model's config
    return {key: int(config[key]) for key in _GGUF_KEYS.values() if key in config}


def gguf_metadata(path: str | Path, keys: Mapping[str, str]) -> dict[str, Any]:
    """The header values of the GGUF metadata ``keys``, renamed by the mapping; reading stops once all
    are found, so the tokenizer arrays and the tensors after them are never read."""
    found = {}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        _read(f, "I"), _read(f, "Q")  # version, tensor count
        for _ in range(_read(f, "Q")):
            key = f.read(_read(f, "Q")).decode("utf-8")
            value = _gguf_value(f, _read(f, "I"))
            if key in keys:
                found[keys[key]] = value
                if len(found) == len(keys):
                    break
    return found


def _read(f, fmt: str):
    return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]


def _gguf_value(f, kind: int):
    if kind in _GGUF_SCALARS:
        return _read(f, _GGUF_SCALARS[kind])
    if kind == 8:  # string
        return f.read(_read(f, "Q")).decode("utf-8", "replace")
    if kind == 9:  # array: item type, count, items
        item_kind, count = _read(f, "I"), _read(f, "Q")
        return [_gguf_value(f, item_kind) for _ in range(count)]
    raise ValueError(f"unknown GGUF value type {kind}")


def _check_variants_fit(model: str, shapes: Mapping[str, int], variants: list[str]) -> list[str]:
    problems = []
    layers = shapes.get("num_hidden_layers")
    # Every pruned or quantised linear reads hidden_size or intermediate_size inputs (down_proj).
    widths = sorted({shapes[k] for k in ("hidden_size", "intermediate_size") if k in shapes})
    for index, name in enumerate(variants):
        spec, where = parse_variant(name), f"variants[{index}] ({name!r})"
        if spec.kind == "drop" and layers is not None and spec.k >= layers:
            problems.append(f"{where}: model {model!r} has {layers} layers; drop counts allowed: 1..{layers - 1}")
        group = spec.n_of_m[1] if spec.kind == "prune" and spec.n_of_m else getattr(spec, "group_size", None)
        if group and any(width % group for width in widths):
            what = "M of N:M" if spec.kind == "prune" else "the group size"
            problems.append(f"{where}: {what} = {group} does not divide the input widths {widths} of model "
                            f"{model!r}; allowed: a divisor of every width")
    return problems
