"""A small, schema-exact results folder for the report tests, written by code (no committed binaries).

Every value follows a simple formula stated next to it, so the report tests can compute the expected
query results by hand. Layout (model ``m1``; 4 layers; probe sets ``mc`` (2 prompts) and ``math`` (1)):

- ``dense/metrics/layerwise-{mc,math}``: drop mode, steps 0-2, layers 0-3, sublayers attn / mlp;
- ``{wanda-unstructured50, wanda-2of4, quant-awq-w4g64}/metrics/layerwise-*``: pruned mode, same grid,
  cos lower by 0.01 * severity;
- ``{every non-dense}/metrics/generation-*``: free and forced, final layer (-1); mc prompts decode 4 steps
  (0-3), the math prompt 2 (0-1);
- ``{every non-dense}/metrics/subspace-mc``: one forward per mc prompt with option log-probs; the option
  sets are ragged (mc/0 has 4 options, mc/1 has 3), as the subspace probe writes them;
- ``{every variant}/tasks/summary.parquet`` and ``tasks/{task}.parquet``: four tasks of all three kinds,
  with several metrics and filters, a gold companion metric and a group task with member rows; the
  per-item tables are 0/1 values whose means are exactly the summary's values.

The metrics that do not depend on the temperature (:data:`T_INDEPENDENT`) are stored once, with
``temperature`` null, as the metrics stage stores them.

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
from prunescope.report.sources import METRICS_SCHEMA, TASK_SAMPLES_SCHEMA, TASKS_SCHEMA
from prunescope.tasks.records import SAMPLE_SCHEMA

MODEL = "m1"
VARIANTS = ["dense", "wanda-unstructured50", "wanda-2of4", "drop-attn-1", "drop-attn-2", "drop-mlp-1",
            "quant-awq-w4g64"]  # fmt: skip
LAYERWISE_VARIANTS = {"dense": "drop", "wanda-unstructured50": "pruned", "wanda-2of4": "pruned",
                      "quant-awq-w4g64": "pruned"}  # fmt: skip
PROMPTS = {"mc": ["mc/0", "mc/1"], "math": ["math/0"]}
LAYERS = range(4)
TEMPERATURES = (0.5, 1.0)
T_INDEPENDENT = {"var_uniform", "rms_dz", "top1_agree", "argmax_agree"}
GENERATION_STEPS = {"mc/0": 4, "mc/1": 4, "math/0": 2}
# Option log-probs of the dense model at T = 1 for each mc prompt (option k = position in the list).
DENSE_LOGP = {"mc/0": [-1.0, -2.0, -3.0, -4.0], "mc/1": [-3.0, -1.0, -2.0]}
# Per-variant severity: scales generation KL and task losses.
SEVERITY = {"wanda-unstructured50": 1, "wanda-2of4": 2, "drop-attn-1": 1, "drop-attn-2": 3, "drop-mlp-1": 2,
            "quant-awq-w4g64": 1}  # fmt: skip
# task -> (kind, {subtask: items}, [(subtask, metric, filter, dense correct items, items lost per severity)]).
# A variant gets the first (dense - lost * severity) items right, a subset of the dense model's.
TASKS = {
    "arc_easy": ("multiple_choice", {"arc_easy": 40}, [("arc_easy", "acc", "none", 24, 1),
                                                       ("arc_easy", "acc_norm", "none", 20, 1)]),
    "gsm8k": ("generative", {"gsm8k": 40}, [("gsm8k", "exact_match", "strict-match", 8, 2),
                                            ("gsm8k", "exact_match", "flexible-extract", 16, 4),
                                            ("gsm8k", "gold_acc", "none", 36, 1)]),
    # a group: its members' rows and its own row, the items pooled (lm-eval's size-weighted mean)
    "mmlu": ("multiple_choice", {"mmlu_x": 60, "mmlu_y": 40}, [("mmlu_x", "acc", "none", 18, 1),
                                                              ("mmlu_y", "acc", "none", 24, 1)]),
    "squad_retrieval": ("retrieval", {"squad_retrieval": 40}, [("squad_retrieval", "ndcg@10", "last", 32, 2),
                                                               ("squad_retrieval", "ndcg@10", "mean", 28, 2),
                                                               ("squad_retrieval", "recall@1", "last", 28, 2)]),
}  # fmt: skip


def correct_items(variant: str, dense: int, lost: int) -> int:
    """How many items (the first ones) ``variant`` gets right where the dense model gets ``dense``."""
    return dense - lost * SEVERITY.get(variant, 0)


def layerwise_value(space, metric, temperature, layer, step, prompt_index, sublayer, severity=0):
    """cos falls with the step and the prompt, rises with the layer; mlp is 0.1 lower; logits 0.05 higher;
    probabilities start at 0.8 (T = 1) or 0.7 (T = 0.5; the T-independent metrics use T = 1); a pruned
    variant's is 0.01 * severity lower. Estimates are the measurement scaled by (1 + 0.1 * prompt_index),
    so that their correlation with it is high but not exactly 1."""
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
    space; rms_dz = KL, var_uniform = KL / 2; the other probability metrics are 0."""
    kl = SEVERITY[variant] * (step + 1) * (1.0 if mode == "free" else 0.5)
    return {"cos": 1 - kl / 100, "kl": kl, "rms_dz": kl, "var_uniform": kl / 2}.get(metric, 0.0)


def subspace_values(variant, prompt_id, temperature):
    """{(space, metric): value}: the variant moves every option's log p by -severity * k / 2 (k = option
    index); top-1 over the vocabulary agrees on mc/0 only, the option argmax agrees on both prompts.
    ``temperature`` None gives the T-independent metrics, a number the option log-probs at that T."""
    if temperature is None:
        return {("subspace", "argmax_agree"): 1.0, ("probability", "top1_agree"): float(prompt_id == "mc/0")}
    shift = SEVERITY[variant] / 2
    values = {}
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
    """{(space, T or None, metric): function(space, metric, T)} over the metrics the pipeline writes;
    the T-independent probability metrics once, with T None (their value is taken at T = 1)."""
    out = {}
    for space in ("embedding", "logit"):
        out.update({(space, None, m): function(space, m, None) for m in VECTOR_METRICS})
    spaces = {"probability": PROBABILITY_METRICS, **({"subspace": SUBSPACE_METRICS} if subspace else {})}
    for space, metrics in spaces.items():
        out.update({(space, None, m): function(space, m, 1.0) for m in metrics if m in T_INDEPENDENT})
        for t in TEMPERATURES:
            out.update({(space, t, m): function(space, m, t) for m in metrics if m not in T_INDEPENDENT})
    return out


def _write_metrics(path: Path, rows: list[dict]) -> None:
    """As prunescope.metrics.job.write_metrics does: a pandas frame (int32 keys) through Arrow."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"step": "int32", "layer": "int32", "temperature": "float64"})
    write_parquet(pa.Table.from_pandas(frame, preserve_index=False), path, {"fixture": True})


def _task_rows(model: str, variant: str) -> tuple[list[dict], dict[str, list[dict]]]:
    """(summary rows, {task: per-item rows}) of one variant, from :data:`TASKS`."""
    summary, items = [], {}
    for task, (kind, leaves, entries) in TASKS.items():
        items[task] = []
        per_doc = {}  # (subtask, filter, doc) -> {metric: 0/1}
        for subtask, metric, filter_name, dense, lost in entries:
            right, n = correct_items(variant, dense, lost), leaves[subtask]
            summary.append(dict(model=model, variant=variant, task=task, subtask=subtask, task_kind=kind, metric=metric,
                                filter=filter_name, value=right / n, stderr=0.01, n=n))
            for doc in range(n):
                per_doc.setdefault((subtask, filter_name, doc), {})[metric] = float(doc < right)
        if len(leaves) > 1:  # the group's own row: its items pooled
            for metric, filter_name in {(e[1], e[2]) for e in entries}:
                right = sum(correct_items(variant, e[3], e[4]) for e in entries if (e[1], e[2]) == (metric, filter_name))
                summary.append(dict(model=model, variant=variant, task=task, subtask=task, task_kind=kind, metric=metric,
                                    filter=filter_name, value=right / sum(leaves.values()), stderr=0.01,
                                    n=sum(leaves.values())))
        for (subtask, filter_name, doc), metrics in per_doc.items():
            items[task].append(dict(model=model, variant=variant, task=task, subtask=subtask, task_kind=kind,
                                    filter=filter_name, doc_id=doc, prompt=f"question {doc}", metrics=metrics,
                                    correct=next(iter(metrics.values()))))
    return summary, items


def write_fixture(root: Path, model: str = MODEL) -> dict[str, list[Path]]:
    """Write the fixture under ``root/results/{model}`` and return {view: files} for prunescope.report.sources."""
    results = root / "results" / model
    files = {"metrics": [], "tasks": [], "task_samples": []}
    for variant, mode in LAYERWISE_VARIANTS.items():
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
            for t in (None, *TEMPERATURES):
                values.update({(s, t, m): v for (s, m), v in subspace_values(variant, prompt, t).items()})
            rows += _rows(model, variant, "subspace", "mc", prompt, 0, -1, "final", "forward", values)
        path = results / variant / "metrics" / "subspace-mc.parquet"
        _write_metrics(path, rows)
        files["metrics"].append(path)
    for variant in VARIANTS:
        summary, items = _task_rows(model, variant)
        path = results / variant / "tasks" / "summary.parquet"
        write_parquet(pa.Table.from_pylist(summary, schema=TASKS_SCHEMA), path, {"fixture": True})
        files["tasks"].append(path)
        for task, rows in items.items():
            path = results / variant / "tasks" / f"{task}.parquet"
            write_parquet(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), path, {"fixture": True})
            files["task_samples"].append(path)
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


def test_fixture_temperatures_are_null_for_the_t_independent_metrics(tmp_path):
    files = write_fixture(tmp_path)
    frame = pd.concat([pq.read_table(path).to_pandas() for path in files["metrics"]])
    independent = frame["space"].isin(["embedding", "logit"]) | frame["metric"].isin(T_INDEPENDENT)
    assert frame.loc[independent, "temperature"].isna().all()
    assert set(frame.loc[~independent, "temperature"]) == set(TEMPERATURES)
    # each T-independent metric once per row key, not once per temperature
    keys = ["variant", "probe", "probe_set", "prompt_id", "step", "layer", "sublayer", "mode", "space", "metric"]
    assert not frame[independent].duplicated(keys).any()
    assert _same_types(pq.read_schema(files["tasks"][0]), TASKS_SCHEMA)


def test_fixture_items_average_to_the_summary_values(tmp_path):
    files = write_fixture(tmp_path)
    assert _same_types(pq.read_schema(files["task_samples"][0]), SAMPLE_SCHEMA)
    assert set(TASK_SAMPLES_SCHEMA.names) <= set(SAMPLE_SCHEMA.names)
    for field in TASK_SAMPLES_SCHEMA:
        assert SAMPLE_SCHEMA.field(field.name).type == field.type, field.name
    gsm8k = pq.read_table([p for p in files["task_samples"] if p.parts[-3] == "drop-attn-2" and p.stem == "gsm8k"][0])
    rows = gsm8k.to_pylist()
    flexible = [dict(r["metrics"])["exact_match"] for r in rows if r["filter"] == "flexible-extract"]
    assert sum(flexible) / len(flexible) == 0.10  # (16 - 4 * 3) / 40


def test_report_views_have_the_task_stage_summary_schema():
    from prunescope.tasks.records import SUMMARY_SCHEMA

    assert TASKS_SCHEMA.equals(SUMMARY_SCHEMA)
