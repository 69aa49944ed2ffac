"""Every file the workflow reads or writes, as one path pattern each.

Rules, target lists, the report and the tests take their paths from here, so a folder is renamed in one
place. Patterns use Snakemake's wildcard syntax ({model}, {variant}, ...); :func:`fill` sets some of them
and leaves the others for Snakemake. Layout (also in README.md):

- ``resources/``: inputs (model checkpoints, calibration windows, benchmark snapshots and hub manifests);
- ``results/{model}/{variant}/``: everything built for one variant (its checkpoint or drop plan, probe
  and metrics tables, task results); model-wide files sit in ``results/{model}/``;
- ``results/report/``: figures, the summary table and the offline page.
"""

from __future__ import annotations

MODEL = "resources/models/{model}"
CALIBRATION = "resources/calibration/{model}/{calibration}.parquet"
TASK_SNAPSHOT = "resources/benchmarks/{task}.parquet"
TASK_MANIFEST = "resources/benchmarks/hub/{task}.json"

VARIANT = "results/{model}/{variant}"
VARIANT_MODEL = VARIANT + "/model"  # intra-layer and quantised variants: a stock HF checkpoint
SPARSITY = VARIANT + "/sparsity.parquet"
QUANTIZATION = VARIANT + "/quantization.parquet"
LAYER_SCORES = "results/{model}/layer_scores.parquet"
DROP_PLAN = VARIANT + "/drop_spec.json"

PROMPTS = "results/{model}/prompts/{probe_set}.parquet"
PROBE = VARIANT + "/probes/{probe}-{probe_set}.parquet"
METRICS = VARIANT + "/metrics/{probe}-{probe_set}.parquet"

TASK_TABLE = VARIANT + "/tasks/{task}.parquet"
TASK_SUMMARY = VARIANT + "/tasks/summary.parquet"
TASK_RAW = VARIANT + "/tasks/lm_eval.json"
TASK_RAW_SAMPLES = VARIANT + "/tasks/lm_eval_samples.jsonl.gz"

REPORT = "results/report"
REPORT_PAGE = REPORT + "/index.html"

# What each variant kind's build step writes last: the file that makes the variant loadable.
BUILD_OUTPUT = {"prune": SPARSITY, "quant": QUANTIZATION, "drop": DROP_PLAN}


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(pattern: str, **values) -> str:
    """``pattern`` with the named wildcards set; the others stay as ``{name}`` for Snakemake.

    >>> fill(PROBE, variant="dense", probe="layerwise", probe_set="mc")
    'results/{model}/dense/probes/layerwise-mc.parquet'
    """
    return pattern.format_map(_KeepMissing(values))


def fill_each(pattern: str, key: str, values, **fixed) -> list[str]:
    """One filled pattern per value of wildcard ``key``, in order (Snakemake's ``expand`` over one key)."""
    return [fill(pattern, **fixed, **{key: value}) for value in values]
