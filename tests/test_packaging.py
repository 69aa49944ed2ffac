"""Packaging and workflow hygiene: pins agree everywhere, lint is clean, every rule logs."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_mirrors_the_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "envs" / "prunescope.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip_section) == pins
    assert all("==" in pin for pin in pins), "every dependency is pinned exactly"


def test_lint_finds_nothing_but_the_conda_suggestion():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    lints = re.findall(r"^\s+\* (.+?):?$", result.stdout + result.stderr, re.M)
    assert lints, "expected at least the conda/container suggestion (is --lint still running?)"
    assert set(lints) == {"Specify a conda environment or container for each rule."}, lints


def test_every_rule_declares_log_threads_resources():
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for rule in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = rule.split(":")[0]
            body = rule.split("\nrule ")[0]
            for directive in ("log:", "threads:", "resources:"):
                assert directive in body, f"{smk.name}: rule {name} lacks {directive}"
