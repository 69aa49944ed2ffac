"""workflow_scripts/quantize.py on a tiny checkpoint: stock checkpoint, grid file, table with settings."""

from __future__ import annotations

import atexit
import logging
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM

from prunescope.calibration import write_calibration
from prunescope.io import read_settings
from prunescope.loading import load_variant
from prunescope import runlog
from prunescope.quantization import GRID_FILE, load_grids, on_grid
from tests.tiny_checkpoint import save_tiny_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "workflow_scripts" / "quantize.py"


class _Files(SimpleNamespace):
    def get(self, key, default=None):
        return getattr(self, key, default)


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("dense"), layers=2)


def run_script(tmp_path: Path, dense: Path, variant: str, calibration: bool = True) -> Path:
    inputs = _Files(model=str(dense))
    if calibration:
        ids = torch.randint(0, 300, (6, 24), generator=torch.Generator().manual_seed(0))
        write_calibration(ids, tmp_path / "calibration.parquet", {"dataset": "test", "seed": 0})
        inputs.calibration = str(tmp_path / "calibration.parquet")
    out = tmp_path / "results" / variant
    snakemake = SimpleNamespace(
        input=inputs,
        output=SimpleNamespace(model=str(out / "model"), quantization=str(out / "quantization.parquet")),
        params=SimpleNamespace(settings={"batch_size": 4, "gptq_blocksize": 128, "gptq_percdamp": 0.01,  # as the schema fills
                                         "gptq_act_order": True, "awq_grid": 20}, device="cpu", dtype="float32"),
        wildcards=SimpleNamespace(model="tiny", variant=variant),
        resources={"mem_mb": 4000},
        log=[str(tmp_path / f"{variant}.log")],
        threads=1,
        rule="quantize",
    )
    # The script sets up a job process (log handlers, excepthook, an exit hook); undo that for pytest.
    hook, handlers, threads = sys.excepthook, logging.getLogger().handlers[:], torch.get_num_threads()
    try:
        runpy.run_path(str(SCRIPT), init_globals={"snakemake": snakemake}, run_name="__main__")
    finally:
        atexit.unregister(runlog._log_job_stats)
        sys.excepthook = hook
        for handler in logging.getLogger().handlers[:]:
            logging.getLogger().removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            logging.getLogger().addHandler(handler)
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("variant, calibrated", [("quant-awq-w4g16", True), ("quant-gptq-w3", True), ("quant-rtn-w4g32", False)])
def test_quantize_script_writes_a_stock_checkpoint_its_grids_and_the_table(tmp_path, dense, variant, calibrated):
    out = run_script(tmp_path, dense, variant, calibration=calibrated)
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    modules = dict(model.named_modules())
    grids = load_grids(out / "model" / GRID_FILE)
    assert len(grids) == 2 * 7 and all(on_grid(modules[name].weight, grid) for name, grid in grids.items())
    assert not list((out / "model").glob("quantization*.safetensors"))  # the grids never look like weights

    table = pq.read_table(out / "quantization.parquet").to_pylist()
    method = variant.split("-")[1]
    assert len(table) == 14 and {r["variant"] for r in table} == {variant} and {r["method"] for r in table} == {method}
    assert all(0 < r["weight_error"] < 0.5 for r in table)
    assert all((r["output_error"] is not None) == calibrated for r in table)
    assert all((r["awq_alpha"] is not None) == (method == "awq") for r in table)
    settings = read_settings(out / "quantization.parquet")
    assert settings["quantization"]["gptq_act_order"] is True and settings["quantization"]["awq_grid"] == 20
    assert (settings["calibration"] is not None) == calibrated and settings["bits"] == int(variant.split("-w")[1][0])

    # The loader every later stage uses takes it like a pruned variant: the quantised weights, dense tokenizer.
    loaded, tokenizer = load_variant(dense, variant, out)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with torch.no_grad():
        ids = tokenizer("The story begins", return_tensors="pt")["input_ids"]
        assert torch.isfinite(loaded(ids).logits).all()
