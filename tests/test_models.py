"""The models stage: embedded GGUF conversion, hub (offline) and local-path sources."""

import os
import time

import pytest
import torch

from prunescope.models import ModelSourceError, load_embedded, resolve_model
from prunescope.metrics.head_loading import HEAD_CACHE
from tests.tiny_checkpoint import save_tiny_checkpoint


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("embedded") / "smollm2"
    resolve_model({"source": "embedded", "dtype": "float32"}, out)
    return out


@pytest.mark.slow
def test_converted_model_matches_gguf_and_speaks_english(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert model.dtype == torch.float32
    assert (model.config.model_type, model.config.num_hidden_layers, model.config.hidden_size) == ("llama", 30, 576)
    assert "quantization_config" not in model.config.to_dict()

    gguf_model, _ = load_embedded(torch.float32)
    ids = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, gguf_model(ids).logits, rtol=0, atol=1e-4)

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_dict=False, return_tensors="pt",
    )
    out = model.generate(prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_hub_source_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelSourceError, match="'no-such-org/no-such-model'.*not in the local Hugging Face cache"):
        resolve_model({"source": "hub", "id": "no-such-org/no-such-model"}, tmp_path / "m")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "m").exists(), "a failed download must leave no output behind"


def test_path_source_links_a_valid_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    src = save_tiny_checkpoint(tmp_path / "src")
    resolve_model({"source": "path", "path": str(src)}, tmp_path / "out")
    assert os.path.islink(tmp_path / "out" / "model.safetensors")
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    # The metrics' head cache is a file of the output folder, not of the linked checkpoint.
    assert (tmp_path / "out" / HEAD_CACHE).is_file() and not (src / HEAD_CACHE).exists()


def test_path_source_rejects_a_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="has no config.json"):
        resolve_model({"source": "path", "path": str(tmp_path / "empty")}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
