"""``batch_size: auto``: batches sized from a job's declared memory, checked against hand-worked numbers."""

import math

import pytest
import torch

from prunescope.batching import (
    MAX_AUTO_BATCH, MB, USABLE_FRACTION, BatchSizeError, Job, Shapes, budget_mb, evaluation_batch_size,
    parameter_count, probe_batch_size, probe_item_mb, pruning_batch_size, resolve_batch_size, scoring_batch_size,
    sequence_mb,
)
from prunescope.config import ConfigError, check_config, load_schema
from tests.tiny_checkpoint import save_tiny_checkpoint

QWEN_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
           "num_key_value_heads": 4, "vocab_size": 152064}


def test_shapes_from_a_config():
    shapes = Shapes.from_config(QWEN_7B)
    assert shapes == Shapes(hidden=3584, intermediate=18944, layers=28, vocab=152064, kv_width=4 * 128)
    explicit = Shapes.from_config({**QWEN_7B, "head_dim": 64, "num_key_value_heads": None})
    assert explicit.kv_width == 28 * 64  # no grouped-query attention: as many KV heads as heads


def test_sequence_memory_by_hand():
    shapes = Shapes(hidden=4, intermediate=8, layers=2, vocab=10, kv_width=2)
    # per token: (4·4 + 3·8)·2 = 80 activations, 2·2·2·2 = 16 cache, 10·(2 + 8) = 100 logits
    assert sequence_mb(shapes, 3, 2, logits=True) * MB == pytest.approx(3 * 196)
    assert sequence_mb(shapes, 3, 2, logits=False) * MB == pytest.approx(3 * 96)


def test_auto_fits_what_the_budget_holds():
    # 1000 MB · 0.85 = 850 usable, 100 resident, 50 per item -> 15 items
    assert resolve_batch_size("auto", budget=1000, resident=100, per_item=50, what="x", resource="mem_mb") == 15
    assert resolve_batch_size(3, budget=1, resident=100, per_item=50, what="x", resource="mem_mb") == 3  # pinned
    many = resolve_batch_size("auto", budget=1e9, resident=0, per_item=1, what="x", resource="mem_mb")
    assert many == MAX_AUTO_BATCH


def test_no_room_names_the_resource_and_what_is_needed():
    with pytest.raises(BatchSizeError) as err:
        resolve_batch_size("auto", budget=100, resident=80, per_item=30, what="tasks.batch_size", resource="gpu_mem_mb")
    need = math.ceil((80 + 30) / USABLE_FRACTION)
    assert "tasks.batch_size" in str(err.value) and f"gpu_mem_mb={need}" in str(err.value)


def test_budget_comes_from_the_declared_resources():
    assert budget_mb(torch.device("cpu"), {"mem_mb": 16000, "gpu_mem_mb": 80000}) == 16000
    with pytest.raises(BatchSizeError, match="mem_mb"):
        budget_mb(torch.device("cpu"), {})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), layers=2)


def test_parameter_count_reads_the_safetensors_headers(checkpoint):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert parameter_count(checkpoint) == sum(p.numel() for p in model.state_dict().values())


def test_stage_estimates_on_a_checkpoint(checkpoint):
    shapes = Shapes.from_checkpoint(checkpoint)  # hidden 64, intermediate 128, 2 layers
    weights = parameter_count(checkpoint) * 2 / MB  # bf16
    cpu = Job(checkpoint, torch.device("cpu"), torch.bfloat16, {"mem_mb": 40})
    usable = 40 * USABLE_FRACTION
    # scoring: whole model resident, one window of 512 tokens without logits
    per_window = 512 * ((4 * 64 + 3 * 128) * 2 + 2 * 2 * 32 * 2) / MB
    assert scoring_batch_size("auto", cpu, seqlen=512) == min(MAX_AUTO_BATCH, math.floor((usable - weights) / per_window))
    # pruning: + stored inputs/outputs of 16 windows and the fp32 statistics
    resident = weights + 2 * 16 * 512 * 64 * 2 / MB + (3 * 64**2 + 2 * 128**2) * 4 / MB
    assert pruning_batch_size("auto", cpu, windows=16, seqlen=512) == math.floor((usable - resident) / per_window)
    # evaluation: 2048 tokens with logits
    per_sequence = 2048 * ((4 * 64 + 3 * 128) * 2 + 2 * 2 * 32 * 2 + shapes.vocab * 10) / MB
    fits = math.floor((usable - weights) / per_sequence)
    if fits >= 1:
        assert evaluation_batch_size("auto", cpu) == fits
    else:
        with pytest.raises(BatchSizeError):
            evaluation_batch_size("auto", cpu)
    assert evaluation_batch_size(4, cpu) == 4


def test_probe_memory_by_hand():
    shapes = Shapes(hidden=4, intermediate=8, layers=2, vocab=10, kv_width=2)
    # prompt 3, 5 new tokens, 2-byte dtype: prefill activations 3·(4·4 + 3·8)·2 = 240; one cache of
    # 8 tokens · 2 · 2 layers · 2 · 2 = 128; last-position logits 10·(2 + 8) = 100; 6 fp32 vectors of 4 per
    # new token: 5·6·4·4 = 480
    assert probe_item_mb(shapes, 3, 5, 2) * MB == pytest.approx(240 + 128 + 100)
    assert probe_item_mb(shapes, 3, 5, 2, caches=2, vectors_per_step=6) * MB == pytest.approx(240 + 256 + 100 + 480)


def test_probe_batch_size_on_a_checkpoint(checkpoint):
    shapes = Shapes.from_checkpoint(checkpoint)
    weights = parameter_count(checkpoint) * 4 / MB  # the probes run in fp32
    cpu = Job(checkpoint, torch.device("cpu"), torch.float32, {"mem_mb": 40})
    per_prompt = (100 * (4 * 64 + 3 * 128) * 4 + 2 * 356 * 2 * 2 * 32 * 4 + shapes.vocab * 12 + 256 * 8 * 64 * 4) / MB
    expected = math.floor((40 * USABLE_FRACTION - 2 * weights) / per_prompt)
    assert expected >= 1
    got = probe_batch_size("auto", cpu, prompt_tokens=100, new_tokens=256, models=2, caches=2, vectors_per_step=8)
    assert got == min(MAX_AUTO_BATCH, expected)
    assert probe_batch_size(3, cpu, prompt_tokens=100, new_tokens=256) == 3  # pinned
    with pytest.raises(BatchSizeError, match=r"probes.batch_size: batch_size auto finds no room .* mem_mb=1 MB"):
        probe_batch_size("auto", Job(checkpoint, torch.device("cpu"), torch.float32, {"mem_mb": 1}),
                         prompt_tokens=100, new_tokens=256)


def test_paper_scale_on_an_80_gb_gpu_budget():
    """Qwen2.5-7B in bf16 (7.6 B weights): lm-eval sequences of 2048 tokens need ~3 GB each (logits)."""
    shapes = Shapes.from_config(QWEN_7B)
    per_sequence = sequence_mb(shapes, 2048, 2, logits=True)
    assert 3300 < per_sequence < 3400
    weights = 7.6e9 * 2 / MB
    batch = resolve_batch_size("auto", budget=80000, resident=weights, per_item=per_sequence, what="t", resource="g")
    assert batch == math.floor((80000 * USABLE_FRACTION - weights) / per_sequence) and 10 <= batch <= 20


def test_config_accepts_auto_and_names_bad_values():
    from pathlib import Path

    schema = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")
    base = {"models": {"m": {"source": "embedded"}}, "variants": ["dense"]}
    check_config({**base, "pruning": {"batch_size": "auto"}, "tasks": {"batch_size": "auto"}}, schema)
    with pytest.raises(ConfigError, match=r"pruning.batch_size: 'big' is not allowed; allowed: .*auto"):
        check_config({**base, "pruning": {"batch_size": "big"}}, schema)
    with pytest.raises(ConfigError, match=r"dropping.batch_size: 0 is not allowed"):
        check_config({**base, "dropping": {"batch_size": 0}}, schema)
