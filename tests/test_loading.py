"""load_variant: dense, intra-layer checkpoint and drop variants from folders on disk; lm-eval on a drop variant."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from tokenizers import Tokenizer, models, pre_tokenizers

from prunescope.dropping import (
    PLAN_FILE,
    DropPlan,
    DropPlanError,
    active_drops,
    apply_drops,
    make_plan_record,
    model_fingerprint,
    write_plan_file,
)
from prunescope.loading import load_model, load_variant
from prunescope.variants import VariantError


def word_tokenizer():
    """A real fast tokenizer over the tiny vocabulary: words t3..t127, specials <pad> <s> </s>."""
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2} | {f"t{i}": i for i in range(3, 128)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="t3"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="t3")


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "models" / "tiny"
    tiny_model("llama", seed=3).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


def drop_variant_dir(tmp_path, model_dir, unit="attn", layers=(1,), variant=None, fingerprint_model=None):
    variant = variant or f"drop-{unit}-{len(layers)}"
    folder = tmp_path / "results" / "tiny" / variant
    fingerprint = model_fingerprint(fingerprint_model or load_model(model_dir)[0], "tiny")
    record = make_plan_record("tiny", variant, unit, len(layers), layers, {i: 0.9 for i in layers},
                              {"n_samples": 4}, fingerprint)
    write_plan_file(record, folder / PLAN_FILE)
    return folder


IDS = torch.tensor([[1, 5, 9, 40, 77, 100, 3, 64]])


def test_dense_loads_checkpoint_and_tokenizer(model_dir):
    model, tokenizer = load_variant(model_dir, "dense", dtype="float32", attn_implementation="eager")
    reference = tiny_model("llama", seed=3)
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, reference(IDS).logits)
    assert tokenizer("t5 t9 t40")["input_ids"] == [5, 9, 40]
    assert not model.training and active_drops(model) is None
    half, _ = load_variant(model_dir, "dense", dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16


def test_intra_layer_variant_loads_pruned_weights(model_dir, tmp_path):
    variant_dir = tmp_path / "results" / "tiny" / "magnitude-unstructured50"
    pruned = tiny_model("llama", seed=3)
    with torch.no_grad():
        weight = pruned.model.layers[0].mlp.down_proj.weight
        weight[:, ::2] = 0
    pruned.save_pretrained(variant_dir / "model")  # weights only: the tokenizer comes from model_dir
    model, tokenizer = load_variant(model_dir, "magnitude-unstructured50", variant_dir,
                                    attn_implementation="eager")
    assert torch.equal(model.model.layers[0].mlp.down_proj.weight, weight)
    assert (model.model.layers[0].mlp.down_proj.weight[:, ::2] == 0).all()
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, pruned(IDS).logits)
    assert tokenizer.eos_token == "</s>"
    empty = tmp_path / "results" / "tiny" / "wanda-2of4"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"checkpoint of 'wanda-2of4': .*wanda-2of4/model is not"):
        load_variant(model_dir, "wanda-2of4", empty)
    with pytest.raises(ValueError, match="needs variant_dir"):
        load_variant(model_dir, "magnitude-unstructured50")


def test_intra_layer_checkpoint_of_another_model_is_refused(model_dir, tmp_path):
    variant_dir = tmp_path / "results" / "tiny" / "wanda-2of4"
    tiny_model("llama", hidden_size=32).save_pretrained(variant_dir / "model")
    with pytest.raises(ValueError, match="does not match the dense model"):
        load_variant(model_dir, "wanda-2of4", variant_dir)


def test_drop_variant_applies_the_plan(model_dir, tmp_path):
    variant_dir = drop_variant_dir(tmp_path, model_dir, "attn", layers=(0, 2))
    model, _ = load_variant(model_dir, "drop-attn-2", variant_dir, attn_implementation="eager")
    assert active_drops(model) == DropPlan(attn={0, 2})
    reference = tiny_model("llama", seed=3)
    with torch.no_grad():
        dense_logits = reference(IDS).logits
        with apply_drops(reference, DropPlan(attn={0, 2})):
            assert torch.equal(model(IDS).logits, reference(IDS).logits)
        assert not torch.allclose(model(IDS).logits, dense_logits)
        model._prunescope_drop_handle.remove()
        assert torch.equal(model(IDS).logits, dense_logits)


def test_drop_variant_under_sdpa_generates_like_eager(model_dir, tmp_path):
    variant_dir = drop_variant_dir(tmp_path, model_dir, "block", layers=(0,))
    outputs = []
    for implementation in ("eager", "sdpa"):
        model, _ = load_variant(model_dir, "drop-block-1", variant_dir, attn_implementation=implementation)
        outputs.append(model.generate(IDS, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                                      eos_token_id=None, pad_token_id=0))
    assert torch.equal(outputs[0], outputs[1])


def test_drop_variant_bad_plan_files(model_dir, tmp_path):
    other = drop_variant_dir(tmp_path / "other", model_dir, "mlp", layers=(1,),
                             fingerprint_model=tiny_model("qwen2"))
    with pytest.raises(DropPlanError, match="model_type: recorded 'qwen2' vs model 'llama'"):
        load_variant(model_dir, "drop-mlp-1", other)
    with pytest.raises(DropPlanError, match="model: recorded 'tiny' vs model 'smollm'"):
        load_variant(model_dir, "drop-mlp-1", drop_variant_dir(tmp_path, model_dir, "mlp"), model_key="smollm")
    mismatched = drop_variant_dir(tmp_path, model_dir, "attn", layers=(1,))
    with pytest.raises(DropPlanError, match="describes variant 'drop-attn-1', not 'drop-block-1'"):
        load_variant(model_dir, "drop-block-1", mismatched)
    with pytest.raises(FileNotFoundError, match="drop_spec.json does not exist"):
        load_variant(model_dir, "drop-attn-1", tmp_path)
    with pytest.raises(VariantError, match="unknown variant 'drop-heads-1'"):
        load_variant(model_dir, "drop-heads-1", tmp_path)


def test_lm_eval_loglikelihood_on_a_drop_variant(model_dir, tmp_path):
    """HFLM(pretrained=<model object>) scores through the applied drops: equal to a direct sum of log-probs."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    variant_dir = drop_variant_dir(tmp_path, model_dir, "mlp", layers=(1,))
    model, tokenizer = load_variant(model_dir, "drop-mlp-1", variant_dir, dtype="float32",
                                    attn_implementation="eager")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2, device="cpu")
    requests = [("t5 t9 t40", " t77 t100"), ("t64 t3 t12 t13 t14", " t8"), ("t20", " t21 t22 t23")]
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i)
                 for i, pair in enumerate(requests)]
    results = lm.loglikelihood(instances)
    for (context, continuation), (logprob, _greedy) in zip(requests, results):
        ctx = tokenizer(context)["input_ids"]
        cont = tokenizer(continuation)["input_ids"]
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        expected = sum(logprobs[len(ctx) - 1 + j, token].item() for j, token in enumerate(cont))
        assert logprob == pytest.approx(expected, abs=1e-4)
    assert active_drops(model) == DropPlan(mlp={1})
    model._prunescope_drop_handle.remove()  # the same HFLM object now scores the dense model: other numbers
    dense = lm.loglikelihood(instances)
    assert all(abs(d[0] - r[0]) > 1e-4 for d, r in zip(dense, results))
