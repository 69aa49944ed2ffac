"""load_head: the output head read from the checkpoint's safetensors equals the head of the loaded model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import prunescope.metrics.head_loading as head_loading
from prunescope.adapter import UnsupportedModelError
from prunescope.loading import load_model
from prunescope.metrics import MissingHeadTensorError, head_from_model, load_head
from tests.conftest import tiny_model

HEAD_NAMES = {"lm_head.weight", "model.embed_tokens.weight"}
NORM = "model.norm.weight"


def save(folder, family="llama", *, shard=None, dtype=None, **overrides):
    """A tiny random checkpoint (config + safetensors, no tokenizer: load_head needs none)."""
    model = tiny_model(family, **overrides)
    with torch.no_grad():  # a final norm that is not all ones, so applying it is visible
        model.model.norm.weight.uniform_(0.5, 1.5)
        if getattr(model.lm_head, "bias", None) is not None:
            model.lm_head.bias.normal_()
    if dtype is not None:
        model = model.to(dtype)
    kwargs = {} if shard is None else {"max_shard_size": shard}
    model.save_pretrained(folder, **kwargs)
    return folder


def reference_head(folder, apply_final_norm):
    """What the metrics stage used before: the whole model loaded, then its head."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto").eval()
    return head_from_model(model, apply_final_norm=apply_final_norm)


def assert_same_head(head, ref, apply_final_norm):
    assert head.weight.dtype == torch.float32
    torch.testing.assert_close(head.weight, ref.weight, rtol=0, atol=0)
    if ref.bias is None:
        assert head.bias is None
    else:
        torch.testing.assert_close(head.bias, ref.bias, rtol=0, atol=0)
    assert (head.logit_scale, head.softcap) == (ref.logit_scale, ref.softcap)
    if apply_final_norm:
        assert type(head.norm) is type(ref.norm)
        assert head.norm.weight.dtype == torch.float32 and head.norm.weight.device.type == "cpu"
        assert not head.norm.training and not head.norm.weight.requires_grad
        torch.testing.assert_close(head.norm.weight, ref.norm.weight, rtol=0, atol=0)
        assert head.norm.variance_epsilon == ref.norm.variance_epsilon
    else:
        assert head.norm is None and ref.norm is None
    h = torch.randn(6, head.weight.shape[1], generator=torch.Generator().manual_seed(1)) * 3
    torch.testing.assert_close(head(h), ref(h), rtol=0, atol=0)


CASES = {
    "llama-untied": dict(family="llama", tie_word_embeddings=False),
    "llama-tied": dict(family="llama", tie_word_embeddings=True),
    "qwen2": dict(family="qwen2"),
    "qwen3-tied": dict(family="qwen3", tie_word_embeddings=True),
    "llama-sharded": dict(family="llama", shard="40KB"),
    "qwen2-tied-sharded-bf16": dict(family="qwen2", tie_word_embeddings=True, shard="40KB", dtype=torch.bfloat16),
    "llama-softcap-eps": dict(family="llama", final_logit_softcapping=30.0, rms_norm_eps=1e-3),
}


@pytest.mark.parametrize("apply_final_norm", [False, True], ids=["no-norm", "norm"])
@pytest.mark.parametrize("case", list(CASES))
def test_load_head_equals_head_of_loaded_model(tmp_path, case, apply_final_norm):
    folder = save(tmp_path / "ckpt", **CASES[case])
    if "shard" in CASES[case]:
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 2 and not (folder / "model.safetensors").exists()
    ref = reference_head(folder, apply_final_norm)
    head = load_head(folder, apply_final_norm=apply_final_norm)
    assert_same_head(head, ref, apply_final_norm)


def test_load_head_equals_load_model_on_a_full_checkpoint(tmp_path):
    """The real entry point the stage used before (model + tokenizer folder)."""
    from tests.tiny_checkpoint import save_tiny_checkpoint

    folder = save_tiny_checkpoint(tmp_path / "ckpt", family="llama", layers=2)
    model, _ = load_model(folder)
    for norm in (False, True):
        assert_same_head(load_head(folder, norm), head_from_model(model, norm), norm)


def test_tied_checkpoint_that_also_stores_lm_head(tmp_path):
    """transformers then uses the stored lm_head.weight (untying it when it differs); so must load_head."""
    folder = save(tmp_path / "ckpt", tie_word_embeddings=True)
    tensors = load_file(folder / "model.safetensors")
    assert "lm_head.weight" not in tensors
    tensors["lm_head.weight"] = torch.randn_like(tensors["model.embed_tokens.weight"])
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    head = load_head(folder)
    torch.testing.assert_close(head.weight, tensors["lm_head.weight"], rtol=0, atol=0)
    assert_same_head(head, reference_head(folder, False), False)


def recording_safe_open(monkeypatch):
    """Record every (file, tensor) that load_head reads."""
    read = []
    real = safe_open

    class Recording:
        def __init__(self, path, *args, **kwargs):
            self.path, self.inner = str(path), real(path, *args, **kwargs)

        def __enter__(self):
            self.handle = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def keys(self):
            return self.handle.keys()

        def get_tensor(self, name):
            read.append(name)
            return self.handle.get_tensor(name)

        def get_slice(self, name):
            read.append(name)
            return self.handle.get_slice(name)

    monkeypatch.setattr(head_loading, "safe_open", Recording)
    return read


@pytest.mark.parametrize(
    ("overrides", "apply_final_norm", "expected"),
    [
        (dict(tie_word_embeddings=False), False, ["lm_head.weight"]),
        (dict(tie_word_embeddings=False), True, ["lm_head.weight", NORM]),
        (dict(tie_word_embeddings=True), False, ["model.embed_tokens.weight"]),
        (dict(tie_word_embeddings=True, shard="40KB"), True, ["model.embed_tokens.weight", NORM]),
    ],
)
def test_reads_only_the_head_tensors(tmp_path, monkeypatch, overrides, apply_final_norm, expected):
    folder = save(tmp_path / "ckpt", **overrides)
    read = recording_safe_open(monkeypatch)
    load_head(folder, apply_final_norm)
    assert sorted(read) == sorted(expected)


@pytest.mark.parametrize(("case", "stored"), [("llama-tied", torch.float32), ("qwen2-tied-sharded-bf16", torch.bfloat16),
                                              ("llama-softcap-eps", torch.float32)])
def test_head_cache_gives_the_same_head_without_building_a_skeleton(tmp_path, monkeypatch, case, stored):
    from transformers import AutoModelForCausalLM

    folder = save(tmp_path / "ckpt", **CASES[case])
    ref = load_head(folder, use_cache=False)
    path = head_loading.write_head_cache(folder)
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("weight").dtype == stored  # the narrowest dtype that holds the values exactly

    def refuse(*args, **kwargs):
        raise AssertionError("a cached head needs no model skeleton")

    with monkeypatch.context() as patch:
        patch.setattr(AutoModelForCausalLM, "from_config", refuse)
        assert_same_head(load_head(folder), ref, apply_final_norm=False)
    # The final norm is not in the cache: with it, the head comes from the checkpoint as before.
    assert_same_head(load_head(folder, apply_final_norm=True), reference_head(folder, True), apply_final_norm=True)
    path.unlink()
    assert_same_head(load_head(folder), ref, apply_final_norm=False)


def test_never_loads_the_model(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    folder = save(tmp_path / "ckpt")

    def refuse(*args, **kwargs):
        raise AssertionError("load_head must not load the model")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    assert load_head(folder, True).weight.device.type == "cpu"


def test_layer_tensors_may_be_missing_or_broken(tmp_path):
    """A checkpoint whose decoder layers are gone (or hold garbage) still yields the same head."""
    folder = save(tmp_path / "ckpt", shard="40KB")
    ref = reference_head(folder, True)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    head_files = {index["weight_map"][n] for n in ("lm_head.weight", NORM)}
    for file in sorted(set(index["weight_map"].values()) - head_files):
        (folder / file).write_bytes(b"not a safetensors file")
    layer_names = [n for n in index["weight_map"] if n.startswith("model.layers.")]
    for name in layer_names[:3]:
        del index["weight_map"][name]
    index_path.write_text(json.dumps(index))
    assert_same_head(load_head(folder, True), ref, True)


def test_missing_head_tensor_names_file_and_tensor(tmp_path, monkeypatch):
    folder = save(tmp_path / "ckpt", tie_word_embeddings=False)
    tensors = load_file(folder / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    read = recording_safe_open(monkeypatch)
    with pytest.raises(MissingHeadTensorError, match=r"model\.safetensors: no tensor 'lm_head\.weight'") as err:
        load_head(folder)
    assert str(folder) in str(err.value) and "output head" in str(err.value)
    assert read == []  # nothing read before the error


def test_missing_norm_tensor_only_matters_with_the_norm(tmp_path):
    folder = save(tmp_path / "ckpt", shard="40KB")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shard = index["weight_map"].pop(NORM)
    index_path.write_text(json.dumps(index))
    load_head(folder, apply_final_norm=False)
    with pytest.raises(MissingHeadTensorError, match=r"no tensor 'model\.norm\.weight'.*final norm") as err:
        load_head(folder, apply_final_norm=True)
    assert shard in str(err.value)


def test_tied_checkpoint_without_any_embedding_lists_both_names(tmp_path):
    folder = save(tmp_path / "ckpt", tie_word_embeddings=True)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.embed_tokens.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(MissingHeadTensorError, match=r"'lm_head\.weight' or 'model\.embed_tokens\.weight'"):
        load_head(folder)


def test_index_listing_a_tensor_its_shard_lacks(tmp_path):
    folder = save(tmp_path / "ckpt", shard="40KB")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    other = next(f for f in sorted(set(index["weight_map"].values())) if f != index["weight_map"]["lm_head.weight"])
    index["weight_map"]["lm_head.weight"] = other
    index_path.write_text(json.dumps(index))
    with pytest.raises(MissingHeadTensorError, match=rf"{other}: no tensor 'lm_head\.weight'"):
        load_head(folder)


def test_no_safetensors_or_no_directory(tmp_path):
    folder = save(tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_head(folder)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_head(tmp_path / "nowhere")


def test_unsupported_layout_is_rejected_like_head_from_model(tmp_path):
    from transformers import AutoConfig

    folder = tmp_path / "gemma2"
    folder.mkdir()
    config = AutoConfig.for_model(
        "gemma2", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16,
    )
    config.save_pretrained(folder)
    with pytest.raises(UnsupportedModelError):
        load_head(folder)


def test_safe_open_reads_head_dtype_as_stored(tmp_path):
    """A bf16 checkpoint: the head is bf16 on disk, fp32 in the Head, with the same values."""
    folder = save(tmp_path / "ckpt", dtype=torch.bfloat16)
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        stored = f.get_tensor("lm_head.weight")
    assert stored.dtype == torch.bfloat16
    head = load_head(folder, True)
    assert head.weight.dtype == torch.float32 and head.norm.weight.dtype == torch.float32
    torch.testing.assert_close(head.weight, stored.float(), rtol=0, atol=0)
