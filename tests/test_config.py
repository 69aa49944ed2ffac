"""The schema rejects bad configs with one message naming the key and what is allowed."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunescope.config import ConfigError, check_config, load_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(ROOT / "config" / "schema.yaml")
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def with_changes(**changes):
    config = copy.deepcopy(DEFAULT)
    config.update(changes)
    return config


def test_shipped_configs_are_valid():
    for path in sorted((ROOT / "config").glob("*.yaml")):
        if path.name != "schema.yaml":
            check_config(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"variants": ["dense", "wanda-foo"]}, r"variants\[1\]: unknown variant 'wanda-foo'; allowed: 'dense', '\{magnitude"),
        ({"variants": ["quant-gptq-w9g128"]}, r"variants\[0\]: unknown variant 'quant-gptq-w9g128'; allowed: .*bits 2..8"),
        ({"variants": ["sparsegpt-4of2"]}, r"variants\[0\]: variant 'sparsegpt-4of2': N:M pattern needs 0 < N < M"),
        ({"calibrate": {}}, r"<top level>: unknown key\(s\) 'calibrate'; allowed: calibration, device"),
        ({"calibration": {"n_samples": "many"}}, r"calibration.n_samples: 'many' has the wrong type; expected integer"),
        ({"device": "tpu"}, r"device: 'tpu' is not allowed; allowed: auto, cpu, cuda"),
        ({"models": {}}, r"models: at least one entry is required"),
        ({"models": {"q": {"source": "hub"}}}, r"models.q: missing required key 'id'"),
        ({"models": {"q": {"source": "path"}}}, r"models.q: missing required key 'path'"),
        ({"models": {"q": {"source": "ftp"}}}, r"models.q.source: 'ftp' is not allowed; allowed: embedded, hub, path"),
        ({"models": {"Big Model": {"source": "embedded"}}}, r"models: 'Big Model' is not allowed; allowed: model names of lowercase"),
    ],
)
def test_bad_configs_name_the_key(changes, expected):
    with pytest.raises(ConfigError, match=expected):
        check_config(with_changes(**changes), SCHEMA)


def test_missing_models_key():
    config = with_changes()
    del config["models"]
    with pytest.raises(ConfigError, match="missing required key 'models'"):
        check_config(config, SCHEMA)


def test_every_schema_property_is_documented():
    """Every key carries a description, and every optional leaf a default (the schema is the docs)."""

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}.{key} has no description"
            if sub.get("type") not in ("object", "array") and key not in node.get("required", []):
                if not ("enum" in sub and "default" not in sub and key == "source"):
                    assert "default" in sub or key in ("id", "revision", "path"), f"{path}.{key} has no default"
            walk(sub, f"{path}.{key}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")

    walk(SCHEMA, "config")


def test_snakemake_stops_before_scheduling(tmp_path):
    """A bad value on the command line fails the dry run with the same message, before any job."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "variants=[dense,drop-attn-x]"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "variants[1]: unknown variant 'drop-attn-x'; allowed:" in result.stderr + result.stdout
    assert "Job stats" not in result.stdout
