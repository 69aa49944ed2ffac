"""The wiring layer's library: path patterns, what a configuration asks for, canonical params, and the
parse-time checks of input the schema cannot see."""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from prunescope import paths
from prunescope.config import ConfigError, canonical, check_config, load_schema
from prunescope.preflight import check_run_inputs, gguf_metadata, model_shapes
from prunescope.targets import RunTargets, probes_of_set
from prunescope.variants import VARIANT_PATTERN, name_pattern

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(ROOT / "config" / "schema.yaml")


def validated(config: dict) -> dict:
    """The config as the rules see it: checked, with the schema's defaults filled in (as the Snakefile does)."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    check_config(config, SCHEMA)
    validate(config, str(ROOT / "config" / "schema.yaml"))
    return config


def default_config() -> dict:
    return validated(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


def test_fill_sets_only_the_named_wildcards():
    assert paths.fill(paths.PROBE, variant="dense", probe="layerwise", probe_set="mc") == \
        "results/{model}/dense/probes/layerwise-mc.parquet"
    assert paths.fill_each(paths.PROMPTS, "probe_set", ["a", "b"], model="m") == \
        ["results/m/prompts/a.parquet", "results/m/prompts/b.parquet"]


def test_name_patterns_come_from_one_grammar():
    full = VARIANT_PATTERN
    for name, kinds in {"dense": ("dense",), "wanda-2of4": ("prune",), "sparsegpt-unstructured50": ("prune",),
                        "drop-block-3": ("drop",), "quant-awq-w4g128": ("quant",), "quant-rtn-w3": ("quant",)}.items():
        assert re.fullmatch(full, name)
        for kind in ("dense", "prune", "drop", "quant"):
            assert bool(re.fullmatch(name_pattern(kind), name)) == (kind in kinds), (name, kind)
    for bad in ("wanda-2of4x", "drop-head-1", "quant-rtn-w1", "quant-gptq-w4g0", "dense2"):
        assert not re.fullmatch(full, bad)
    with pytest.raises(ValueError, match="unknown variant kind"):
        name_pattern("sparse")


def test_default_run_targets_match_the_stage_contracts():
    config = default_config()
    run = RunTargets(config)
    model = run.models[0]
    assert run.variants[0] == "dense" and run.of_kind("drop") == [v for v in config["variants"] if v.startswith("drop")]
    probes = run.probe_tables(model)
    metrics = run.metrics_tables(model)
    # The dense generation table is a reference, not a comparison: no metrics table for it.
    assert len(probes) - len(metrics) == len(run.sets_for("generation"))
    for table in probes:
        assert table.path == paths.fill(paths.PROBE, model=table.model, variant=table.variant, probe=table.probe,
                                        probe_set=table.probe_set)
    layerwise_variants = {t.variant for t in probes if t.probe == "layerwise"}
    assert layerwise_variants == {"dense", *run.of_kind("prune", "quant")}
    subspace_sets = {t.probe_set for t in probes if t.probe == "subspace"}
    # A set's `probes` key chooses its probes: the default's mc set decodes, mc_subspace is subspace only.
    assert subspace_sets == {n for n, s in config["probes"]["sets"].items()
                             if s["kind"] == "multiple_choice" and "subspace" in s.get("probes", ["subspace"])}
    assert subspace_sets == {"mc_subspace"}
    targets = run.final_targets()
    assert targets[-1] == paths.REPORT_PAGE and len(targets) == len(set(targets))
    assert paths.fill(paths.DROP_PLAN, model=model, variant="drop-attn-4") in targets
    assert paths.fill(paths.SPARSITY, model=model, variant="wanda-2of4") in targets


def test_probe_sets_choose_their_probes_and_sort_by_name():
    config = default_config()
    config["probes"]["sets"] = {"zz": {"kind": "math", "n": 2, "seed": 0},
                                "mc_large": {"kind": "multiple_choice", "n": 100, "seed": 0, "probes": ["subspace"]},
                                "mc": {"kind": "multiple_choice", "n": 4, "seed": 0}}
    run = RunTargets(config)
    assert run.sets_for("layerwise") == ["mc", "zz"]
    assert run.sets_for("subspace") == ["mc", "mc_large"]
    assert probes_of_set({"kind": "open"}) == ("layerwise", "generation")


def test_data_free_methods_read_no_calibration():
    config = default_config()
    config["variants"] = ["magnitude-2of4", "wanda-2of4", "quant-rtn-w4g64", "quant-gptq-w4g64"]
    run = RunTargets(config)
    model = run.models[0]
    assert "calibration" not in run.rewrite_inputs(model, "magnitude-2of4")
    assert "calibration" not in run.rewrite_inputs(model, "quant-rtn-w4g64")
    assert run.rewrite_inputs(model, "quant-gptq-w4g64")["calibration"] == run.calibration_path(model)
    assert run.variant_inputs(model, "quant-gptq-w4g64")["variant"].endswith("/quant-gptq-w4g64/quantization.parquet")


def test_canonical_sorts_keys_recursively_and_keeps_list_order():
    a = canonical({"b": 1, "a": {"d": [3, {"y": 1, "x": 2}], "c": 0}})
    b = canonical({"a": {"c": 0, "d": [3, {"x": 2, "y": 1}]}, "b": 1})
    assert repr(a) == repr(b) == "{'a': {'c': 0, 'd': [3, {'x': 2, 'y': 1}]}, 'b': 1}"
    assert canonical([2, 1]) == [2, 1]


# Parse-time checks ------------------------------------------------------------------------------------
def checked(config: dict, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        check_run_inputs(validated(config), tmp_path / "models")
    return str(err.value)


def path_model(folder) -> dict:
    return {"models": {"mine": {"source": "path", "path": str(folder)}}, "variants": ["dense"]}


def test_missing_path_folder_or_config_json(tmp_path):
    message = checked(path_model(tmp_path / "nowhere"), tmp_path)
    assert f"models.mine.path: '{tmp_path / 'nowhere'}' is not a folder" in message
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in checked(path_model(tmp_path / "empty"), tmp_path)


def checkpoint_folder(tmp_path, layers=3, hidden=64, intermediate=96) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"num_hidden_layers": layers, "hidden_size": hidden, "intermediate_size": intermediate}))
    return folder


def test_drop_count_must_stay_below_the_layer_count(tmp_path):
    config = path_model(checkpoint_folder(tmp_path, layers=3))
    config["variants"] = ["dense", "drop-block-2", "drop-attn-3", "drop-mlp-4"]
    message = checked(config, tmp_path)
    assert "variants[2] ('drop-attn-3'): model 'mine' has 3 layers; drop counts allowed: 1..2" in message
    assert "drop-mlp-4" in message and "drop-block-2" not in message


def test_embedded_model_shapes_come_from_the_gguf_header(tmp_path):
    """drop-block-30 on the 30-layer default fails at parse time, before the model is converted."""
    shapes = model_shapes("smollm2", {"source": "embedded"}, tmp_path)
    assert shapes == {"num_hidden_layers": 30, "hidden_size": 576, "intermediate_size": 1536}
    config = {"models": {"smollm2": {"source": "embedded"}}, "variants": ["drop-block-29", "drop-block-30"]}
    message = checked(config, tmp_path)
    assert "'drop-block-30'): model 'smollm2' has 30 layers; drop counts allowed: 1..29" in message
    assert "drop-block-29" not in message


def test_gguf_reader_stops_at_the_requested_keys(tmp_path):
    from prunescope.models import embedded_gguf_path

    values = gguf_metadata(embedded_gguf_path(), {"general.architecture": "arch", "llama.block_count": "layers"})
    assert values == {"arch": "llama", "layers": 30}
    (tmp_path / "x.gguf").write_bytes(b"NOPE")
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_metadata(tmp_path / "x.gguf", {})


def test_group_sizes_must_divide_the_layer_widths(tmp_path):
    config = path_model(checkpoint_folder(tmp_path, hidden=64, intermediate=96))
    config["variants"] = ["quant-rtn-w4g64", "quant-gptq-w4g32", "wanda-2of4", "sparsegpt-4of8", "wanda-3of5"]
    message = checked(config, tmp_path)
    assert "'quant-rtn-w4g64'): the group size = 64 does not divide the input widths [64, 96]" in message
    assert "'wanda-3of5'): M of N:M = 5 does not divide" in message
    for fine in ("quant-gptq-w4g32", "wanda-2of4", "sparsegpt-4of8"):
        assert fine not in message


def test_subspace_needs_a_multiple_choice_set(tmp_path):
    config = path_model(checkpoint_folder(tmp_path))
    config["probes"] = {"sets": {"m": {"kind": "math", "n": 2, "probes": ["subspace"]}}}
    assert "probes.sets.m.probes: 'subspace' needs kind multiple_choice, not 'math'" in checked(config, tmp_path)


def test_the_shipped_configs_pass_the_parse_time_checks(tmp_path):
    for name in ("config.yaml", "smoke-gpu.yaml", "paper.yaml"):
        check_run_inputs(validated(yaml.safe_load((ROOT / "config" / name).read_text())), tmp_path)


def test_ablation_temperatures_reach_only_the_dense_layerwise_metrics():
    from types import SimpleNamespace

    from prunescope.families import metrics_rules

    config = default_config()
    config["metrics"]["temperatures"] = [1.0]
    config["metrics"]["ablation_temperatures"] = [0.5, 1.0, 1.3]
    rules = {record.name: record.params["temperatures"] for record in metrics_rules(RunTargets(config), config)}
    per_variant = rules["metrics_layerwise"]
    assert per_variant(SimpleNamespace(variant="dense")) == [0.5, 1.0, 1.3]
    assert per_variant(SimpleNamespace(variant="wanda-2of4")) == [1.0]
    assert rules["metrics_generation"] == [1.0] and rules["metrics_subspace"] == [1.0]
    config["metrics"]["ablation_temperatures"] = [1.0]  # nothing beyond the main list: a plain list again
    assert {r.name: r.params["temperatures"] for r in metrics_rules(RunTargets(config), config)}[
        "metrics_layerwise"] == [1.0]
