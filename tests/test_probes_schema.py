"""Probe Parquet tables: schema, round trip, null vectors, float16 storage, metadata, DuckDB access."""

from __future__ import annotations

import copy

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import tiny_model

from prunescope.io import read_settings
from prunescope.probes.decoding import DecodingSettings
from prunescope.probes.generation import dense_trajectories, reference_records, variant_records
from prunescope.probes.layerwise import layerwise_probe
from prunescope.probes.schema import probe_schema, probe_settings, records_to_table, write_probe_parquet
from prunescope.probes.subspace import subspace_records

SETTINGS = DecodingSettings(temperature=1.0, max_new_tokens=3, seed=0, eos_token_ids=())
KEYS = ["model", "variant", "probe", "probe_set", "prompt_id", "step", "layer", "sublayer", "mode"]


def layerwise_rows():
    dense, variant = tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    return layerwise_probe(dense, {"p": [4, 5, 6]}, SETTINGS, variant=variant)


def test_layerwise_round_trip_float32(tmp_path):
    rows = layerwise_rows()
    settings = probe_settings(decoding=SETTINGS.as_settings(), chat_template=False, model_dtype="float32")
    path = tmp_path / "probes" / "layerwise-mc.parquet"
    write_probe_parquet(
        rows, path, model="tiny", variant="wanda-2of4", probe="layerwise", probe_set="mc", settings=settings
    )
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == probe_schema("layerwise")
    assert table.num_rows == len(rows) == 3 * 3 * 2
    assert set(table.column("variant").to_pylist()) == {"wanda-2of4"}
    for row, stored in zip(rows, table.to_pylist()):
        assert {k: stored[k] for k in ("prompt_id", "step", "layer", "sublayer", "mode", "token_ref", "token_var")} == {
            k: row[k] for k in ("prompt_id", "step", "layer", "sublayer", "mode", "token_ref", "token_var")
        }
        assert np.array_equal(np.array(stored["h_ref"], dtype=np.float32), row["h_ref"].numpy())
        assert np.array_equal(np.array(stored["h_var"], dtype=np.float32), row["h_var"].numpy())
    meta = read_settings(path)
    assert meta["decoding"]["temperature"] == 1.0 and meta["decoding"]["seed"] == 0
    assert meta["chat_template"] is False and meta["vector_dtype"] == "float32" and "step" in meta["conventions"]


def test_float16_storage_and_duckdb_cosine(tmp_path):
    rows = layerwise_rows()
    path = tmp_path / "half.parquet"
    settings = probe_settings(decoding=None, chat_template=True, model_dtype="float32", vector_dtype="float16")
    write_probe_parquet(rows, path, model="m", variant="v", probe="layerwise", probe_set="s", settings=settings,
                        vector_dtype="float16")
    table = pq.read_table(path)
    assert table.schema.field("h_ref").type == pa.list_(pa.float16())
    for row, stored in zip(rows, table.column("h_var").to_pylist()):
        assert np.array_equal(np.array(stored, dtype=np.float16), row["h_var"].half().numpy())
    cos = duckdb.sql(f"SELECT list_cosine_similarity(h_ref, h_var) FROM '{path}'").fetchall()
    cosine = torch.nn.functional.cosine_similarity
    expected = [float(cosine(r["h_ref"].half().float(), r["h_var"].half().float(), dim=0)) for r in rows]
    np.testing.assert_allclose([c for (c,) in cos], expected, rtol=1e-4, atol=1e-5)


def test_generation_tables_keep_null_vectors_and_non_null_keys(tmp_path):
    dense = tiny_model("qwen2")
    reference = dense_trajectories(dense, {"p": [7, 8, 9]}, SETTINGS)
    ref_table = records_to_table(reference_records(reference), "m", "dense", "generation", "math")
    var_table = records_to_table(
        variant_records(copy.deepcopy(dense), {"p": [7, 8, 9]}, SETTINGS, reference, mode="forced"),
        "m", "wanda-unstructured50", "generation", "math",
    )
    assert ref_table.column("h_var").null_count == ref_table.num_rows and ref_table.column("h_ref").null_count == 0
    assert var_table.column("h_ref").null_count == var_table.num_rows and var_table.column("h_var").null_count == 0
    for table in (ref_table, var_table):
        assert all(table.column(k).null_count == 0 for k in KEYS + ["token_ref", "token_var"])
        assert set(table.column("layer").to_pylist()) == {-1}
    # The intended query: variant rows joined to the reference on the step.
    write_probe_parquet(reference_records(reference), tmp_path / "ref.parquet", model="m", variant="dense",
                        probe="generation", probe_set="math", settings={})
    pq.write_table(var_table, tmp_path / "var.parquet")
    cos = duckdb.sql(
        f"SELECT min(list_cosine_similarity(r.h_ref, v.h_var)) FROM '{tmp_path}/ref.parquet' r "
        f"JOIN '{tmp_path}/var.parquet' v USING (model, probe_set, prompt_id, step)"
    ).fetchall()[0][0]
    assert cos == pytest.approx(1.0, abs=1e-6)


def test_subspace_table_has_ragged_option_columns_and_forms(tmp_path):
    dense = tiny_model("llama")
    prompts = {"piqa": [3, 4, 5], "arc5": [3, 4], "hs": [5, 6, 7, 8]}
    options = {"piqa": [6, 7], "arc5": [6, 7, 8, 9, 10], "hs": [16, 17, 18, 19]}
    forms = {"piqa": "spaced", "arc5": "spaced", "hs": "bare"}
    rows = subspace_records(dense, dense, prompts, options, answers={"piqa": "B"}, option_forms=forms)
    table = records_to_table(rows, "m", "dense", "subspace", "mc")
    assert table.column("option_tokens").to_pylist() == [[6, 7], [6, 7, 8, 9, 10], [16, 17, 18, 19]]
    assert table.column("option_form").to_pylist() == ["spaced", "spaced", "bare"]
    assert table.column("answer").to_pylist() == ["B", "", ""]
    assert table.schema.field("option_tokens").type == pa.list_(pa.int64())
    assert table.schema.field("option_form") == pa.field("option_form", pa.string(), nullable=False)
    pq.write_table(table, tmp_path / "sub.parquet")
    counts = duckdb.sql(f"SELECT option_form, len(option_tokens) FROM '{tmp_path}/sub.parquet'").fetchall()
    assert counts == [("spaced", 2), ("spaced", 5), ("bare", 4)]
    # Records without the per-prompt form are refused with the column named.
    with pytest.raises(ValueError, match="subspace records lack the column 'option_form'"):
        records_to_table([{k: v for k, v in rows[0].items() if k != "option_form"}], "m", "dense", "subspace", "mc")


def test_bad_tables_are_rejected():
    rows = layerwise_rows()
    with pytest.raises(ValueError, match="probe 'trace' is not one of"):
        records_to_table(rows, "m", "v", "trace", "s")
    with pytest.raises(ValueError, match="vector_dtype 'bfloat16' is not one of"):
        records_to_table(rows, "m", "v", "layerwise", "s", vector_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"generation records have modes \['pruned'\]"):
        records_to_table(rows, "m", "v", "generation", "s")
    ragged = [dict(rows[0]), dict(rows[1], h_ref=rows[1]["h_ref"][:10])]
    with pytest.raises(ValueError, match="1-D of one length"):
        records_to_table(ragged, "m", "v", "layerwise", "s")
