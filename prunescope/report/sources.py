"""Named DuckDB views over the pipeline's Parquet outputs and the paper's figure data.

Every report query (``reports/*.sql``) reads these views, never file paths, so one SQL text runs on the
files a Snakemake rule declares as its inputs or on a test fixture:

=============  ==========================================================================================
view           rows
=============  ==========================================================================================
metrics        ``results/{model}/{variant}/metrics/*.parquet``, columns of
               :data:`prunescope.metrics.long_table.COLUMNS` (:data:`METRICS_SCHEMA`); metrics that do
               not depend on the temperature have ``temperature`` null, so queries select
               ``temperature IS NULL OR temperature = $temperature``
tasks          ``results/{model}/{variant}/tasks/summary.parquet`` (:data:`TASKS_SCHEMA`)
task_samples   ``results/{model}/{variant}/tasks/{task}.parquet``, the per-item columns the report reads
               (:data:`TASK_SAMPLES_SCHEMA`)
task_*         scores, per-item values, intervals and paired changes: :mod:`prunescope.report.task_views`
variants       one row per variant name seen in ``metrics`` or ``tasks`` (plus ``dense``): kind, method,
               pattern, sparsity, unit, k, bits, group size, a display label and a sort order
paper_fig1     the paper's Fig 1 (task score vs dropped layers), ``reports/paper_data/fig1_*.csv``
paper_fig4     the paper's Fig 4 (cosine per layer), ``reports/paper_data/fig4_*.csv``
=============  ==========================================================================================

A view whose files are absent is empty but keeps its columns, so a query over it returns no rows
instead of failing on a glob that matches nothing. The connection also holds the interval functions
``ci95`` and ``ci95_strata`` (:mod:`prunescope.report.intervals`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from prunescope.report.intervals import DEFAULT, Bootstrap, register
from prunescope.report.task_views import create_task_views
from prunescope.variants import DROP_UNITS, PRUNING_METHODS, QUANT_METHODS, parse_variant

METRICS_SCHEMA = pa.schema([
    ("model", pa.string()), ("variant", pa.string()), ("probe", pa.string()), ("probe_set", pa.string()),
    ("prompt_id", pa.string()), ("step", pa.int32()), ("layer", pa.int32()), ("sublayer", pa.string()),
    ("mode", pa.string()), ("temperature", pa.float64()), ("space", pa.string()), ("metric", pa.string()),
    ("value", pa.float64()),
])  # fmt: skip
# The task stage's summary table (prunescope.tasks.records.SUMMARY_SCHEMA; a test keeps the two equal).
TASKS_SCHEMA = pa.schema([
    ("model", pa.string()), ("variant", pa.string()), ("task", pa.string()), ("subtask", pa.string()),
    ("task_kind", pa.string()), ("metric", pa.string()), ("filter", pa.string()),
    ("value", pa.float64()), ("stderr", pa.float64()), ("n", pa.int64()),
])  # fmt: skip
# The columns of the task stage's per-item tables (prunescope.tasks.records.SAMPLE_SCHEMA) the report reads.
TASK_SAMPLES_SCHEMA = pa.schema([
    ("model", pa.string()), ("variant", pa.string()), ("task", pa.string()), ("subtask", pa.string()),
    ("task_kind", pa.string()), ("filter", pa.string()), ("doc_id", pa.int64()),
    ("metrics", pa.map_(pa.string(), pa.float64())),
])  # fmt: skip
PARQUET_VIEWS = {"metrics": METRICS_SCHEMA, "tasks": TASKS_SCHEMA, "task_samples": TASK_SAMPLES_SCHEMA}

PAPER_DATA = Path(__file__).resolve().parents[2] / "reports" / "paper_data"
PAPER_FILES = {"paper_fig1": "fig1_layer_drop_vs_tasks.csv", "paper_fig4": "fig4_layerwise_cosine_qwen2.5-7b.csv"}

_METHOD_LABELS = {"magnitude": "Magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT",
                  "rtn": "RTN", "gptq": "GPTQ", "awq": "AWQ"}  # fmt: skip


def connect(
    sources: Mapping[str, Sequence[str | os.PathLike]],
    paper_files: Mapping[str, str | os.PathLike] | None = None,
    boot: Bootstrap = DEFAULT,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection holding the views of this module's table.

    ``sources`` maps ``metrics`` / ``tasks`` / ``task_samples`` to their Parquet files (missing keys mean no
    files); ``paper_files`` maps ``paper_fig1`` / ``paper_fig4`` to CSV paths (default: ``reports/paper_data``);
    ``boot`` sets the intervals' bootstrap.
    """
    unknown = sorted(set(sources) - set(PARQUET_VIEWS))
    if unknown:
        raise ValueError(f"unknown report source(s) {unknown}; allowed: {sorted(PARQUET_VIEWS)}")
    con = duckdb.connect()
    register(con, boot)
    for view, schema in PARQUET_VIEWS.items():
        _parquet_view(con, view, [str(p) for p in sources.get(view, ())], schema)
    create_task_views(con)
    names = [row[0] for row in con.sql("SELECT variant FROM metrics UNION SELECT variant FROM tasks").fetchall()]
    con.register("variants", variant_table(names))
    papers = {view: PAPER_DATA / name for view, name in PAPER_FILES.items()}
    papers.update(paper_files or {})
    for view, path in papers.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"paper data for view {view!r} not found at {path}")
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_csv({_quote(path)}, header = true)")
    return con


def run_query(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The result of one SQL statement over the views of ``con``, with its ``$name`` parameters bound.

    Only the parameters the statement uses are passed (DuckDB rejects unused ones); a used parameter that
    ``params`` lacks is an error naming it.
    """
    params = dict(params or {})
    code = re.sub(r"--[^\n]*", "", sql)  # parameters named in comments are not parameters
    used = sorted(set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", code)))
    missing = [name for name in used if name not in params]
    if missing:
        raise ValueError(f"query uses parameter(s) {missing} but only {sorted(params)} were given")
    return con.execute(code, {name: params[name] for name in used}).df()


def variant_table(names: Iterable[str]) -> pd.DataFrame:
    """Typed columns of each variant name (plus ``dense``), in display order (column ``sort``): dense,
    intra-layer variants by method then pattern, drop variants by unit then k, quantised variants by method,
    then bits (most first), then group size (per channel last). Patterns are ordered (``pattern_sort``)
    dense, unstructured, then N:M from the loosest M down (4:8 before 2:4)."""
    rows = []
    for name in dict.fromkeys(["dense", *names]):
        spec = parse_variant(name)
        row = {"variant": name, "kind": spec.kind, "method": None, "pattern": None, "pattern_label": "dense",
               "sparsity": 0.0, "unit": None, "k": 0, "bits": None, "group_size": None, "label": "dense",
               "_pattern": (0,), "_key": (0,)}  # fmt: skip
        if spec.kind == "prune":
            m = 0 if spec.n_of_m is None else spec.n_of_m[1]
            pattern_key = (1, m != 0, -m, spec.sparsity)
            row.update(method=spec.method, pattern=spec.pattern, pattern_label=_pattern_label(spec),
                       sparsity=spec.sparsity, label=f"{_METHOD_LABELS[spec.method]} {_pattern_label(spec)}",
                       _pattern=pattern_key, _key=(1, PRUNING_METHODS.index(spec.method), *pattern_key))
        elif spec.kind == "drop":
            row.update(unit=spec.unit, k=spec.k, label=f"drop {spec.k} {spec.unit}", pattern_label=None,
                       _key=(2, DROP_UNITS.index(spec.unit), spec.k))
        elif spec.kind == "quant":
            group = "per channel" if spec.group_size is None else f"g{spec.group_size}"
            row.update(method=spec.method, bits=spec.bits, group_size=spec.group_size, pattern_label=None,
                       label=f"{_METHOD_LABELS[spec.method]} {spec.bits}-bit {group}",
                       _key=(3, QUANT_METHODS.index(spec.method), -spec.bits, spec.group_size or 10**9))
        rows.append(row)
    rows.sort(key=lambda row: row["_key"])
    pattern_rank = {key: i for i, key in enumerate(sorted({row["_pattern"] for row in rows}))}
    for i, row in enumerate(rows):
        row["sort"], row["pattern_sort"] = i, pattern_rank[row["_pattern"]]
    frame = pd.DataFrame(rows).drop(columns=["_key", "_pattern"])
    return frame.astype({"k": "int64", "sparsity": "float64", "sort": "int64", "pattern_sort": "int64",
                         "bits": "Int64", "group_size": "Int64"})


def _pattern_label(spec) -> str:
    return f"unstructured {round(spec.sparsity * 100)}%" if spec.n_of_m is None else spec.pattern


def _parquet_view(con: duckdb.DuckDBPyConnection, view: str, files: list[str], schema: pa.Schema) -> None:
    if not files:
        con.register(f"{view}_empty", schema.empty_table())
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM {view}_empty")
        return
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"report view {view!r}: file(s) not found: {missing}")
    listing = ", ".join(_quote(f) for f in files)
    columns = ", ".join(f"{_ident(field.name)}" for field in schema)
    con.execute(f"CREATE VIEW {view} AS SELECT {columns} FROM read_parquet([{listing}], union_by_name = true)")


def _quote(value: str | os.PathLike) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
