"""Named DuckDB views over the pipeline's Parquet outputs and the paper's figure data.

Every report query (``reports/*.sql``) reads these views, never file paths, so one SQL text runs on the
files a Snakemake rule declares as its inputs, on a whole ``results/`` folder found by glob
(:func:`glob_sources`), or on a test fixture:

=============  ==========================================================================================
view           rows
=============  ==========================================================================================
metrics        ``results/{model}/{variant}/metrics/*.parquet``, columns of
               :data:`prunescope.metrics.long_table.COLUMNS` (:data:`METRICS_SCHEMA`)
tasks          ``results/{model}/{variant}/tasks/summary.parquet`` (:data:`TASKS_SCHEMA`)
task_scores    one score per (model, variant, task) in percent: the task's primary (metric, filter) (see
               :data:`PRIMARY_METRICS`, :data:`PRIMARY_FILTERS`), the same for every variant of a model; a
               group task's own row,
               else the mean of its subtasks
variants       one row per variant name seen in ``metrics`` or ``tasks`` (plus ``dense``): kind, method,
               pattern, sparsity, unit, k, a display label and a sort order
paper_fig1     the paper's Fig 1 (task score vs dropped layers), ``reports/paper_data/fig1_*.csv``
paper_fig4     the paper's Fig 4 (cosine per layer), ``reports/paper_data/fig4_*.csv``
=============  ==========================================================================================

A view whose files are absent is empty but keeps its columns, so a query over it returns no rows
instead of failing on a glob that matches nothing.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from prunescope.variants import DROP_UNITS, PRUNING_METHODS, parse_variant

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
PARQUET_VIEWS = {"metrics": METRICS_SCHEMA, "tasks": TASKS_SCHEMA}

# Glob of each Parquet view under a results folder (what a user's own DuckDB session would read).
GLOBS = {"metrics": "{root}/*/*/metrics/*.parquet", "tasks": "{root}/*/*/tasks/summary.parquet"}

PAPER_DATA = Path(__file__).resolve().parents[2] / "reports" / "paper_data"
PAPER_FILES = {"paper_fig1": "fig1_layer_drop_vs_tasks.csv", "paper_fig4": "fig4_layerwise_cosine_qwen2.5-7b.csv"}

# The score a task is shown by, first match wins (lm-eval metric names); other metrics (e.g. the gold
# companions gold_acc / gold_loglik) come after these in alphabetical order. Length-normalised accuracy
# first, as usually reported for HellaSwag and ARC.
PRIMARY_METRICS = ("acc_norm", "acc", "exact_match", "pass@1", "ndcg@10", "recall@1", "f1")
# Then the filter: lm-eval's "none", then (retrieval) mean pooling — a causal LM not trained as an
# encoder has no sentence embedding in its last token — then alphabetical.
PRIMARY_FILTERS = ("none", "mean")

_METHOD_LABELS = {"magnitude": "Magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT"}


def glob_sources(root: str | os.PathLike = "results") -> dict[str, list[str]]:
    """The Parquet files of every view under ``root`` (an empty list where none exist)."""
    return {view: sorted(glob.glob(pattern.format(root=root))) for view, pattern in GLOBS.items()}


def connect(
    sources: Mapping[str, Sequence[str | os.PathLike]],
    paper_files: Mapping[str, str | os.PathLike] | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection holding the views of this module's table.

    ``sources`` maps ``metrics`` / ``tasks`` to their Parquet files (missing keys mean no files);
    ``paper_files`` maps ``paper_fig1`` / ``paper_fig4`` to CSV paths (default: ``reports/paper_data``).
    """
    unknown = sorted(set(sources) - set(PARQUET_VIEWS))
    if unknown:
        raise ValueError(f"unknown report source(s) {unknown}; allowed: {sorted(PARQUET_VIEWS)}")
    con = duckdb.connect()
    for view, schema in PARQUET_VIEWS.items():
        _parquet_view(con, view, [str(p) for p in sources.get(view, ())], schema)
    _task_scores_view(con)
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
    intra-layer variants by method then pattern, drop variants by unit then k. Patterns are ordered
    (``pattern_sort``) dense, unstructured, then N:M from the loosest M down (4:8 before 2:4)."""
    rows = []
    for name in dict.fromkeys(["dense", *names]):
        spec = parse_variant(name)
        row = {"variant": name, "kind": spec.kind, "method": None, "pattern": None, "pattern_label": "dense",
               "sparsity": 0.0, "unit": None, "k": 0, "label": "dense", "_pattern": (0,), "_key": (0,)}
        if spec.kind == "prune":
            m = 0 if spec.n_of_m is None else spec.n_of_m[1]
            pattern_key = (1, m != 0, -m, spec.sparsity)
            row.update(method=spec.method, pattern=spec.pattern, pattern_label=_pattern_label(spec),
                       sparsity=spec.sparsity, label=f"{_METHOD_LABELS[spec.method]} {_pattern_label(spec)}",
                       _pattern=pattern_key, _key=(1, PRUNING_METHODS.index(spec.method), *pattern_key))
        elif spec.kind == "drop":
            row.update(unit=spec.unit, k=spec.k, label=f"drop {spec.k} {spec.unit}", pattern_label=None,
                       _key=(2, DROP_UNITS.index(spec.unit), spec.k))
        rows.append(row)
    rows.sort(key=lambda row: row["_key"])
    pattern_rank = {key: i for i, key in enumerate(sorted({row["_pattern"] for row in rows}))}
    for i, row in enumerate(rows):
        row["sort"], row["pattern_sort"] = i, pattern_rank[row["_pattern"]]
    frame = pd.DataFrame(rows).drop(columns=["_key", "_pattern"])
    return frame.astype({"k": "int64", "sparsity": "float64", "sort": "int64", "pattern_sort": "int64"})


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


def _task_scores_view(con: duckdb.DuckDBPyConnection) -> None:
    metrics = "[" + ", ".join(_quote(m) for m in PRIMARY_METRICS) + "]"
    filters = "[" + ", ".join(_quote(f) for f in PRIMARY_FILTERS) + "]"
    con.execute(f"""
        CREATE VIEW task_scores AS
        -- one value per (metric, filter): a group's own row when lm-eval reports one, else its subtasks' mean
        WITH per_task AS (
            SELECT model, variant, task, any_value(task_kind) AS task_kind, metric, filter,
                   CASE WHEN bool_or(subtask = task) THEN max(value) FILTER (WHERE subtask = task)
                        ELSE avg(value) END AS value,
                   CASE WHEN bool_or(subtask = task) THEN max(stderr) FILTER (WHERE subtask = task)
                        WHEN count(*) = 1 THEN max(stderr) END AS stderr,
                   CASE WHEN bool_or(subtask = task) THEN max(n) FILTER (WHERE subtask = task)
                        ELSE sum(n) END AS n
            FROM tasks GROUP BY model, variant, task, metric, filter
        ),
        -- rank each (model, task)'s metrics once, over all variants, so every variant shows the same one
        ranked AS (
            SELECT model, task, metric, filter,
                   row_number() OVER (PARTITION BY model, task ORDER BY
                       coalesce(list_position({metrics}, metric), 1000), metric,
                       coalesce(list_position({filters}, filter), 1000), filter) AS rank
            FROM (SELECT DISTINCT model, task, metric, filter FROM per_task)
        )
        SELECT t.model, t.variant, t.task, t.task_kind, t.metric, t.filter,
               100 * t.value AS score_pct, 100 * t.stderr AS stderr_pct, t.n
        FROM per_task t JOIN ranked r
          ON t.model = r.model AND t.task = r.task AND t.metric = r.metric AND t.filter IS NOT DISTINCT FROM r.filter
        WHERE r.rank = 1
    """)


def _quote(value: str | os.PathLike) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
