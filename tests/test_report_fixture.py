"""A small, schema-exact results folder for the report tests, written by code (no committed binaries).

Every value follows a simple formula stated next to it, so the report tests can compute the expected
query results by hand. Layout (model ``m1``; 4 layers; probe sets ``mc`` (2 prompts) and ``math`` (1)):

- ``dense/metrics/layerwise-{mc,math}``: drop mode, steps 0-2, layers 0-3, sublayers attn / mlp;
- ``{wanda-unstructured50, wanda-2of4}/metrics/layerwise-*``: pruned mode, same grid, cos lower by
  0.01 * severity;
- ``{every non-dense}/metrics/generation-*``: free and forced, final layer (-1); mc prompts decode 4 steps
  (0-3), the math prompt 2 (0-1);
- ``{every non-dense}/metrics/subspace-mc``: one forward per mc prompt with option log-probs;
- ``{every variant}/tasks/summary.parquet``: four tasks of all three kinds, with several metrics and
  filters, a gold companion metric and a group task with member rows.

The tests in this file check that the fixture has exactly the columns and types the pipeline writes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prunescope.io import write_parquet
from prunescope.metrics.long_table import COLUMNS
from prunescope.metrics.spaces import PROBABILITY_METRICS, SUBSPACE_METRICS, VECTOR_METRICS
from prunescope.report.sources import METRICS_SCHEMA, TASKS_SCHEMA

MODEL = "m1"
VARIANTS = ["dense", "wanda-unstructured50", "wanda-2of4", "drop-attn-1", "drop-attn-2", "drop-mlp-1"]
PROMPTS = {"mc": ["mc/0", "mc/1"], "math": ["math/0"]}
LAYERS = range(4)
TEMPERATURES = (0.5, 1.0)
GENERATION_STEPS = {"mc/0": 4, "mc/1": 4, "math/0": 2}
# Option log-probs of the dense model at T = 1 for each mc prompt (option k = position in the list).
DENSE_LOGP = {"mc/0": [-1.0, -2.0, -3.0, -4.0], "mc/1": [-3.0, -1.0, -4.0, -2.0]}
# Per-variant severity: scales generation KL and task losses.
SEVERITY = {"wanda-unstructured50": 1, "wanda-2of4": 2, "drop-attn-1": 1, "drop-attn-2": 3, "drop-mlp-1": 2}
TASKS = {  # task -> (kind, [(subtask, metric, filter, dense value)]), as the task stage's summary rows
    "arc_easy": ("multiple_choice", [("arc_easy", "acc", "none", 0.60), ("arc_easy", "acc_norm", "none", 0.50)]),
    "gsm8k": ("generative", [("gsm8k", "exact_match", "strict-match", 0.20),
                             ("gsm8k", "exact_match", "flexible-extract", 0.40),
                             ("gsm8k", "gold_acc", "none", 0.90)]),
    # a group: its own row (0.42) and its members (mean 0.45)
    "mmlu": ("multiple_choice", [("mmlu", "acc", "none", 0.42), ("mmlu_x", "acc", "none", 0.30),
                                 ("mmlu_y", "acc", "none", 0.60)]),
    "squad_retrieval": ("retrieval", [("squad_retrieval", "ndcg@10", "last", 0.80),
                                      ("squad_retrieval", "ndcg@10", "mean", 0.70),
                                      ("squad_retrieval", "recall@1", "last", 0.70)]),
}  # fmt: skip
# Task value of a variant = dense value * (1 - LOSS[kind] * severity).
LOSS = {"multiple_choice": 0.05, "generative": 0.25, "retrieval": 0.10}


def layerwise_value(space, metric, temperature, layer, step, prompt_index, sublayer, severity=0):
    """cos falls with the step and the prompt, rises with the layer; mlp is 0.1 lower; logits 0.05 higher;
    probabilities start at 0.8 (T = 1) or 0.7 (T = 0.5); a pruned variant's is 0.01 * severity lower.
    Estimates are the measurement scaled by (1 + 0.1 * prompt_index), so that their correlation with it is
    high but not exactly 1."""
    if space == "probability":
        cos = 0.8 - (0.1 if temperature == 0.5 else 0.0)
    else:
        cos = 0.9 + (0.05 if space == "logit" else 0.0)
    cos += 0.01 * layer - 0.001 * step - 0.0001 * prompt_index - (0.1 if sublayer == "mlp" else 0.0) - 0.01 * severity
    gap = 1.0 - cos
    return {
        "cos": cos, "one_minus_cos": gap, "orth_rel_sq": 2 * gap, "para_rel": 0.5 * gap,
        "theorem1_estimate": gap * (1 + 0.1 * prompt_index), "kl": 2 * gap, "kl_estimate": 2 * gap * (1 + 0.1 * prompt_index),
        "cos_estimate": gap * (1 + 0.1 * prompt_index), "var_uniform": 3 * gap, "rms_dz": 4 * gap,
        "top1_agree": 1.0, "total_variation": 0.5 * gap,
    }[metric]  # fmt: skip


def generation_value(space, metric, variant, mode, step):
    """KL = severity * (step + 1) in free mode, half of that teacher-forced; cos = 1 - KL / 100 in every
    space; rms_dz = KL; the other probability metrics are 0."""
    kl = SEVERITY[variant] * (step + 1) * (1.0 if mode == "free" else 0.5)
    return {"cos": 1 - kl / 100, "kl": kl, "rms_dz": kl}.get(metric, 0.0)


def subspace_values(variant, prompt_id, temperature):
    """{(space, metric): value}: the variant moves every option's log p by -severity * k / 2 (k = option
    index); top-1 over the vocabulary agrees on mc/0 only, the option argmax agrees on both prompts."""
    shift = SEVERITY[variant] / 2
    values = {("subspace", "argmax_agree"): 1.0, ("probability", "top1_agree"): float(prompt_id == "mc/0")}
    for k, logp in enumerate(DENSE_LOGP[prompt_id]):
        values[("subspace", f"logp_ref_{k}")] = logp / temperature
        values[("subspace", f"logp_var_{k}")] = logp / temperature - shift * k
    return values


def _rows(model, variant, probe, probe_set, prompt, step, layer, sublayer, mode, values):
    keys = dict(model=model, variant=variant, probe=probe, probe_set=probe_set, prompt_id=prompt, step=step,
                layer=layer, sublayer=sublayer, mode=mode)
    return [{**keys, "temperature": t, "space": space, "metric": metric, "value": value}
            for (space, t, metric), value in values.items()]


def _spaces(function, *, subspace=False):
    """{(space, T or None, metric): function(space, metric, T)} over the metrics the pipeline writes."""
    out = {}
    for space in ("embedding", "logit"):
        out.update({(space, None, m): function(space, m, None) for m in VECTOR_METRICS})
    for t in TEMPERATURES:
        out.update({("probability", t, m): function("probability", m, t) for m in PROBABILITY_METRICS})
        if subspace:
            out.update({("subspace", t, m): function("subspace", m, t) for m in SUBSPACE_METRICS})
    return out


def _write_metrics(path: Path, rows: list[dict]) -> None:
    """As prunescope.metrics.job.write_metrics does: a pandas frame (int32 keys) through Arrow."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"step": "int32", "layer": "int32", "temperature": "float64"})
    write_parquet(pa.Table.from_pandas(frame, preserve_index=False), path, {"fixture": True})


def write_fixture(root: Path, model: str = MODEL) -> dict[str, list[Path]]:
    """Write the fixture under ``root/results/{model}`` and return {view: files} for prunescope.report.sources."""
    results = root / "results" / model
    files = {"metrics": [], "tasks": []}
    for variant, mode in (("dense", "drop"), ("wanda-unstructured50", "pruned"), ("wanda-2of4", "pruned")):
        severity = SEVERITY.get(variant, 0)
        for probe_set, prompts in PROMPTS.items():
            rows = []
            for p, prompt in enumerate(prompts):
                index = p if probe_set == "mc" else 2  # prompt_index 0, 1 (mc) and 2 (math)
                for step in range(3):
                    for layer in LAYERS:
                        for sub in ("attn", "mlp"):
                            values = _spaces(lambda s, m, t: layerwise_value(s, m, t, layer, step, index, sub, severity))
                            rows += _rows(model, variant, "layerwise", probe_set, prompt, step, layer, sub, mode, values)
            path = results / variant / "metrics" / f"layerwise-{probe_set}.parquet"
            _write_metrics(path, rows)
            files["metrics"].append(path)
    for variant in VARIANTS[1:]:
        for probe_set, prompts in PROMPTS.items():
            rows = []
            for prompt in prompts:
                for mode in ("free", "forced"):
                    for step in range(GENERATION_STEPS[prompt]):
                        values = _spaces(lambda s, m, t: generation_value(s, m, variant, mode, step))
                        rows += _rows(model, variant, "generation", probe_set, prompt, step, -1, "final", mode, values)
            path = results / variant / "metrics" / f"generation-{probe_set}.parquet"
            _write_metrics(path, rows)
            files["metrics"].append(path)
        rows = []
        for prompt in PROMPTS["mc"]:
            values = _spaces(lambda s, m, t: 0.0, subspace=True)
            for t in TEMPERATURES:
                values.update({(s, t, m): v for (s, m), v in subspace_values(variant, prompt, t).items()})
            rows += _rows(model, variant, "subspace", "mc", prompt, 0, -1, "final", "forward", values)
        path = results / variant / "metrics" / "subspace-mc.parquet"
        _write_metrics(path, rows)
        files["metrics"].append(path)
    for variant in VARIANTS:
        rows = []
        for task, (kind, metrics) in TASKS.items():
            for subtask, metric, filter_name, dense_value in metrics:
                value = dense_value * (1 - LOSS[kind] * SEVERITY.get(variant, 0))
                rows.append(dict(model=model, variant=variant, task=task, subtask=subtask, task_kind=kind,
                                 metric=metric, filter=filter_name, value=value, stderr=0.01, n=100))
        path = results / variant / "tasks" / "summary.parquet"
        write_parquet(pa.Table.from_pylist(rows, schema=TASKS_SCHEMA), path, {"fixture": True})
        files["tasks"].append(path)
    return files


def _same_types(schema: pa.Schema, expected: pa.Schema) -> bool:
    """Field names and types equal, counting string and large_string (pandas 3 writes the latter) as one."""
    def kind(t):
        return pa.string() if pa.types.is_large_string(t) else t
    return schema.names == expected.names and all(kind(a.type) == kind(b.type) for a, b in zip(schema, expected))


def test_fixture_metrics_have_the_pipeline_columns_and_types(tmp_path):
    files = write_fixture(tmp_path)
    for path in files["metrics"]:
        schema = pq.read_schema(path)
        assert schema.names == list(COLUMNS)
        assert _same_types(schema, METRICS_SCHEMA), path


def test_fixture_temperatures_are_null_outside_probability_spaces(tmp_path):
    files = write_fixture(tmp_path)
    frame = pq.read_table(files["metrics"][0]).to_pandas()
    vector_spaces = frame["space"].isin(["embedding", "logit"])
    assert frame.loc[vector_spaces, "temperature"].isna().all()
    assert set(frame.loc[~vector_spaces, "temperature"]) == set(TEMPERATURES)
    assert _same_types(pq.read_schema(files["tasks"][0]), TASKS_SCHEMA)


def test_report_views_have_the_task_stage_summary_schema():
    from prunescope.tasks.records import SUMMARY_SCHEMA

    assert TASKS_SCHEMA.equals(SUMMARY_SCHEMA)
