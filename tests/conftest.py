"""Shared fixtures: tiny random-init causal LMs of each supported family, built from a config (no files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Two cores shared with the test runner: one torch thread avoids oversubscription stalls.
torch.set_num_threads(1)

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def tiny_config(family: str, **overrides):
    """A tiny config of ``family`` with GQA (4 heads, 2 KV heads) and a small vocabulary."""
    from transformers import AutoConfig

    kwargs = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    if family == "qwen3":
        kwargs["head_dim"] = 16
    kwargs.update(overrides)
    return AutoConfig.for_model(family, **kwargs)


def tiny_model(family: str = "llama", seed: int = 0, **overrides):
    """A random-init model in fp32, eval mode, eager attention (deterministic on CPU)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, **overrides), attn_implementation="eager")
    return model.eval()


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def make_tiny_model():
    return tiny_model


# The embedded SmolLM2-135M-Instruct, for the few tests that need a real tokenizer / model: the converted
# checkpoint when `make run` has produced it, else straight from the packaged GGUF (so CI never skips).
# Session-scoped: the GGUF tokenizer takes ~8 s to build, the model ~20 s.
EMBEDDED_CHECKPOINT = Path(__file__).resolve().parents[1] / "resources" / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def embedded_tokenizer():
    from transformers import AutoTokenizer

    if (EMBEDDED_CHECKPOINT / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(EMBEDDED_CHECKPOINT)
    from prunescope.models import embedded_gguf_path

    gguf = embedded_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="session")
def embedded_model():
    """The dense embedded model in fp32, eval mode (CPU)."""
    from transformers import AutoModelForCausalLM

    if (EMBEDDED_CHECKPOINT / "model.safetensors").is_file():
        return AutoModelForCausalLM.from_pretrained(EMBEDDED_CHECKPOINT, dtype=torch.float32).eval()
    from prunescope.models import load_embedded

    return load_embedded(torch.float32)[0]
