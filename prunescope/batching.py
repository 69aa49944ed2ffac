"""Batch sizes from a job's declared memory (config ``batch_size: auto``).

A pinned integer is used as it is. ``auto`` fits as many items (calibration windows, evaluation
sequences, texts) as the job's memory budget holds: its Snakemake ``resources`` — ``gpu_mem_mb`` on a
GPU (set it in the profile to the memory of the cluster's GPUs; without it, the device's total memory)
and ``mem_mb`` on the CPU — times :data:`USABLE_FRACTION`, minus what the job keeps resident (weights,
stored activations), divided by an estimate of one item's peak working memory. The estimate depends
only on the config, the checkpoint and the declared resources, never on momentarily free memory, so the
same config and profile always give the same batches (and results).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

AUTO = "auto"
USABLE_FRACTION = 0.85  # the rest: CUDA context, allocator fragmentation, library buffers
MAX_AUTO_BATCH = 64  # beyond this, throughput no longer improves and padding waste grows
MB = 2**20


class BatchSizeError(ValueError):
    """The declared memory cannot hold even one item."""


@dataclass(frozen=True)
class Shapes:
    """The sizes of a decoder-only transformer that set its activation memory."""

    hidden: int
    intermediate: int
    layers: int
    vocab: int
    kv_width: int  # key/value heads × head dimension

    @classmethod
    def from_config(cls, config: Mapping) -> Shapes:
        """From a Hugging Face ``config.json`` dict (llama / mistral / qwen naming)."""
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or hidden // heads)
        return cls(hidden, int(config["intermediate_size"]), int(config["num_hidden_layers"]),
                   int(config["vocab_size"]), int(config.get("num_key_value_heads") or heads) * head_dim)

    @classmethod
    def from_checkpoint(cls, model_dir: str | Path) -> Shapes:
        return cls.from_config(json.loads((Path(model_dir) / "config.json").read_text()))


def budget_mb(device: torch.device, resources: Mapping) -> float:
    """The memory one job may use on ``device``, in MiB, from its declared resources."""
    if device.type == "cuda":
        declared = resources.get("gpu_mem_mb")
        if declared:
            return float(declared)
        return torch.cuda.get_device_properties(device).total_memory / MB
    if "mem_mb" not in resources:
        raise BatchSizeError("batch_size: auto on the CPU needs the job's resources mem_mb")
    return float(resources["mem_mb"])


def parameter_count(model_dir: str | Path) -> int:
    """Number of weights in the checkpoint, read from its safetensors headers (no tensor is loaded)."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors files to size the weights from")
    count = 0
    for file in files:
        with safe_open(file, "pt") as handle:
            count += sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())
    return count


def sequence_mb(shapes: Shapes, tokens: int, dtype_bytes: int, logits: bool) -> float:
    """Peak working memory of one sequence of ``tokens`` through the model, in MiB.

    Activations of one layer at a time (residual, attention projections, the MLP's gate, up and
    activated tensors), the key/value cache of every layer, and — when the LM head runs — the logits
    in the model's dtype plus the fp32 log-softmax and its copy that lm-eval takes of them.
    """
    per_token = (4 * shapes.hidden + 3 * shapes.intermediate) * dtype_bytes
    per_token += 2 * shapes.layers * shapes.kv_width * dtype_bytes
    if logits:
        per_token += shapes.vocab * (dtype_bytes + 2 * 4)
    return tokens * per_token / MB


def resolve_batch_size(setting: int | str, *, budget: float, resident: float, per_item: float, what: str,
                       resource: str) -> int:
    """``setting`` if it is an integer; for ``auto``, the items that fit (at least 1, at most
    :data:`MAX_AUTO_BATCH`). Raises :class:`BatchSizeError`, naming ``resource``, when none fits."""
    if setting != AUTO:
        return int(setting)
    free = budget * USABLE_FRACTION - resident
    fits = math.floor(free / per_item) if free > 0 else 0
    if fits < 1:
        need = math.ceil((resident + per_item) / USABLE_FRACTION)
        raise BatchSizeError(
            f"{what}: batch_size auto finds no room for one item in {resource}={budget:.0f} MB (resident "
            f"{resident:.0f} MB, one item {per_item:.0f} MB, {USABLE_FRACTION:.0%} usable); declare at least "
            f"{resource}={need} or pin batch_size to an integer")
    return min(fits, MAX_AUTO_BATCH)


def resource_name(device: torch.device) -> str:
    return "gpu_mem_mb" if device.type == "cuda" else "mem_mb"


# lm-eval's default context length (HFLM truncates longer inputs for models that declare no smaller one);
# few-shot prompts of the paper's tasks stay below it.
LM_EVAL_TOKENS = 2048


@dataclass(frozen=True)
class Job:
    """What sizing needs to know about one job: its model, device, dtype and declared resources."""

    model_dir: Path
    device: torch.device
    dtype: torch.dtype
    resources: Mapping

    def fit(self, *, resident: float, per_item: float, what: str) -> int:
        """The ``auto`` batch size of this job."""
        return resolve_batch_size(AUTO, budget=budget_mb(self.device, self.resources), resident=resident,
                                  per_item=per_item, what=what, resource=resource_name(self.device))

    @cached_property
    def shapes(self) -> Shapes:
        return Shapes.from_checkpoint(self.model_dir)

    @property
    def dtype_bytes(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    @cached_property
    def weights(self) -> float:
        """The weights in memory (MiB) at this job's dtype; read once from the safetensors headers."""
        return parameter_count(self.model_dir) * self.dtype_bytes / MB


def pruning_batch_size(setting: int | str, job: Job, windows: int, seqlen: int) -> int:
    """Calibration windows per forward while pruning layer by layer (:mod:`prunescope.pruning.sequential`).

    Resident: every window's layer input and output, the fp32 statistics (SparseGPT's Hessians of the
    attention and MLP inputs, with room for their inverse) and, on a GPU, one layer's weights; on the
    CPU the whole model.
    """
    if setting != AUTO:
        return int(setting)
    shapes, bytes_ = job.shapes, job.dtype_bytes
    stored = 2 * windows * seqlen * shapes.hidden * bytes_ / MB
    statistics = (3 * shapes.hidden**2 + 2 * shapes.intermediate**2) * 4 / MB
    weights = job.weights
    resident = stored + statistics + (weights / shapes.layers if job.device.type == "cuda" else weights)
    return job.fit(resident=resident, per_item=sequence_mb(shapes, seqlen, bytes_, logits=False),
                   what="pruning.batch_size")


def scoring_batch_size(setting: int | str, job: Job, seqlen: int) -> int:
    """Calibration windows per forward of the whole backbone while scoring layers for dropping."""
    if setting != AUTO:
        return int(setting)
    return job.fit(resident=job.weights, per_item=sequence_mb(job.shapes, seqlen, job.dtype_bytes, logits=False),
                   what="dropping.batch_size")


def evaluation_batch_size(setting: int | str, job: Job) -> int:
    """lm-eval sequences per forward: the model resident, each sequence up to :data:`LM_EVAL_TOKENS` with logits."""
    if setting != AUTO:
        return int(setting)
    return job.fit(resident=job.weights,
                   per_item=sequence_mb(job.shapes, LM_EVAL_TOKENS, job.dtype_bytes, logits=True),
                   what="tasks.batch_size")


def embedding_batch_size(setting: int | str, job: Job, max_tokens: int) -> int:
    """Texts per forward while embedding for retrieval (backbone only, texts cut to ``max_tokens``)."""
    if setting != AUTO:
        return int(setting)
    return job.fit(resident=job.weights,
                   per_item=sequence_mb(job.shapes, max_tokens, job.dtype_bytes, logits=False),
                   what="tasks.retrieval.batch_size")


def probe_item_mb(shapes: Shapes, prompt_tokens: int, new_tokens: int, dtype_bytes: int, *, caches: int = 1,
                  vectors_per_step: int = 0) -> float:
    """Peak working memory of one prompt decoded by a probe, in MiB.

    The prefill's activations of one layer at a time over ``prompt_tokens``; the key/value cache of every
    layer over prompt + ``new_tokens`` (``caches`` of them: the pruned-mode layer-wise probe keeps a second
    one for the variant's attention); the logits of the last position only (the probes project nothing
    else) in the model's dtype plus their fp32 copy and softmax; and the vectors a probe keeps per step until
    the batch is done (``vectors_per_step`` fp32 vectors of the hidden size). Attention scores are not
    counted: sdpa does not materialise them, and probe prompts are short.
    """
    activations = prompt_tokens * (4 * shapes.hidden + 3 * shapes.intermediate) * dtype_bytes
    cache = caches * (prompt_tokens + new_tokens) * 2 * shapes.layers * shapes.kv_width * dtype_bytes
    logits = shapes.vocab * (dtype_bytes + 2 * 4)
    stored = new_tokens * vectors_per_step * shapes.hidden * 4
    return (activations + cache + logits + stored) / MB


def probe_batch_size(setting: int | str, job: Job, *, prompt_tokens: int, new_tokens: int, models: int = 1,
                     caches: int = 1, vectors_per_step: int = 0) -> int:
    """Prompts per forward of a probe (:mod:`prunescope.probes`): ``models`` models resident (dense and
    variant where both run), each prompt as :func:`probe_item_mb` for the longest prompt of the set."""
    if setting != AUTO:
        return int(setting)
    per_item = probe_item_mb(job.shapes, prompt_tokens, new_tokens, job.dtype_bytes, caches=caches,
                             vectors_per_step=vectors_per_step)
    return job.fit(resident=models * job.weights, per_item=per_item, what="probes.batch_size")
