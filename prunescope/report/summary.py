"""The summary: per variant, task changes and KL with 95 % intervals; per task, scores and paired changes; the
findings (where the theory holds, whether a cheap probe predicts task damage) and the per-layer regime table.

Queries: ``reports/summary.sql`` (per variant), ``reports/summary_tasks.sql`` (per task),
``reports/theory_regime.sql`` and ``reports/task_predictor.sql`` (findings, :mod:`prunescope.report.findings`).
The tables go to Parquet (with their definitions as metadata) and CSV, the findings to JSON, and
:func:`summary_html` and friends render them for the report page.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa

from prunescope.io import atomic_path, write_json, write_parquet
from prunescope.report.findings import finding_lines, predictor_findings, regime_findings
from prunescope.report.intervals import DEFAULT, Bootstrap
from prunescope.report.sources import connect, run_query

QUERIES = ("summary", "tasks", "regime", "predictor")
OUTPUTS = ("parquet", "csv", "html", "tasks_csv", "regime_csv", "findings")
KIND_TITLES = {"dense": "dense", "prune": "intra-layer pruning", "drop": "inter-layer dropping",
               "quant": "weight-only quantisation"}  # fmt: skip
# column -> (heading, kind of number, its interval's (lo, hi) columns or None, its within-noise flag or None)
COLUMNS = {
    "model": ("model", "text", None, None),
    "label": ("variant", "text", None, None),
    **{f"{kind}_rel_change": (title, "relative", (f"{kind}_rel_lo", f"{kind}_rel_hi"), f"{kind}_within_noise")
       for kind, title in (("multiple_choice", "multiple choice"), ("retrieval", "retrieval"),
                           ("generative", "generative"))},
    "n_tasks": ("tasks", "count", None, None),
    "kl_free_mean": ("KL, free-running", "nats", ("kl_free_lo", "kl_free_hi"), None),
    "kl_forced_mean": ("KL, teacher-forced", "nats", ("kl_forced_lo", "kl_forced_hi"), None),
    "option_agree_pct": ("option argmax agrees", "percent", ("option_agree_lo", "option_agree_hi"), None),
    "top1_agree_pct": ("top-1 token agrees", "percent", ("top1_agree_lo", "top1_agree_hi"), None),
}
DEFINITIONS = {
    "rel_change": "mean over the tasks of a kind of (variant score / dense score - 1), each task's primary "
    "metric (prunescope.report.task_views.PRIMARY_METRICS), items paired with the dense model's; tasks with a "
    "dense score of 0 are left out; _lo/_hi: 95 % percentile bootstrap over items, resampled within each task; "
    "_within_noise: the interval contains 0",
    "kl": "mean of KL(p_dense || p_variant) in nats over every step and prompt of the generation probe, "
    "probability space at the report temperature; _lo/_hi: 95 % bootstrap over prompts",
    "agree": "share of multiple-choice items (percent) on which the variant's argmax among the options "
    "(option_agree) or over the vocabulary (top1_agree) equals the dense model's; 95 % bootstrap over items",
}


class Summary(NamedTuple):
    variants: pd.DataFrame
    tasks: pd.DataFrame
    regime: pd.DataFrame  # per-layer table
    findings: list[str]


def build_summary(
    queries: Mapping[str, str | os.PathLike],
    sources: Mapping[str, Sequence[str | os.PathLike]],
    outputs: Mapping[str, str | os.PathLike],
    params: Mapping[str, Any] | None = None,
    boot: Bootstrap = DEFAULT,
) -> Summary:
    """Run the summary queries (``queries`` maps :data:`QUERIES` to SQL files) and write :data:`OUTPUTS`."""
    for what, names, given in (("queries", QUERIES, queries), ("outputs", OUTPUTS, outputs)):
        missing = sorted(set(names) - set(given))
        if missing:
            raise ValueError(f"summary {what} lack {missing}; expected {list(names)}")
    params = dict(params or {})
    text = {name: Path(queries[name]).read_text() for name in QUERIES}
    con = connect(sources, boot=boot)
    try:
        variants = run_query(con, text["summary"], params)
        tasks = run_query(con, text["tasks"], params)
        stats, layers = regime_findings(con, text["regime"], params, boot)
        predictor = predictor_findings(con, text["predictor"], params)
    finally:
        con.close()
    lines = finding_lines(stats, predictor)
    settings = {"definitions": DEFINITIONS, "queries": {k: str(v) for k, v in queries.items()},
                "bootstrap": asdict(boot), **params}
    write_parquet(pa.Table.from_pandas(variants, preserve_index=False), outputs["parquet"], settings)
    for frame, key in ((variants, "csv"), (tasks, "tasks_csv"), (layers, "regime_csv")):
        with atomic_path(outputs[key]) as tmp:
            frame.to_csv(tmp, index=False)
    write_json({"lines": lines, "regime": _records(stats), "predictor": _records(predictor), **settings},
               outputs["findings"])
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>prunescope summary</title></head><body>\n"
        f"{summary_html(variants)}\n{findings_html(lines)}\n{tasks_html(tasks)}\n</body></html>\n"
    )
    with atomic_path(outputs["html"]) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Summary(variants, tasks, layers, lines)


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-safe rows: NaN as None."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.astype(object).to_dict("records")]


def summary_html(frame: pd.DataFrame) -> str:
    """The per-variant summary as an HTML table, one block of rows per variant kind; intervals in brackets,
    changes within noise marked ``~``."""
    columns = [c for c in COLUMNS if c in frame.columns and (c != "model" or frame["model"].nunique() > 1)]
    head = "".join(f"<th>{html.escape(COLUMNS[c][0])}</th>" for c in columns)
    body, kind = [], None
    for row in frame.to_dict("records"):
        if "kind" in row and row["kind"] != kind:
            kind = row["kind"]
            title = KIND_TITLES.get(kind, str(kind))
            body.append(f"<tr class='kind'><th colspan='{len(columns)}'>{html.escape(title)}</th></tr>")
        cells = "".join(_cell(row, c) for c in columns)
        body.append(f"<tr>{cells}</tr>")
    return _table("summary", head, body)


def tasks_html(frame: pd.DataFrame) -> str:
    """The per-task table: one row per variant, one column per task: score [interval] and, for a variant,
    its paired difference to dense in points [interval], ``~`` when within noise."""
    if frame.empty:
        return "<p>No task results.</p>"
    frame = frame.assign(column=frame["task"] + " (" + frame["metric"] + ")")
    columns = list(dict.fromkeys(frame["column"]))
    rows = list(dict.fromkeys(zip(frame["model"], frame["label"])))
    several = frame["model"].nunique() > 1
    head = ("<th>model</th>" if several else "") + "<th>variant</th>" + "".join(
        f"<th>{html.escape(c)}</th>" for c in columns)
    cells = {(r["model"], r["label"], r["column"]): r for r in frame.to_dict("records")}
    body = []
    for model, label in rows:
        line = (f"<td>{html.escape(model)}</td>" if several else "") + f"<td>{html.escape(label)}</td>"
        for column in columns:
            r = cells.get((model, label, column))
            if r is None:
                line += "<td>—</td>"
                continue
            text = f"{_num(r['score_pct'], '.1f')} [{_num(r['lo_pct'], '.1f')}, {_num(r['hi_pct'], '.1f')}]"
            if _finite(r.get("diff_pct")):
                text += (f"; Δ {_signed(r['diff_pct'])} [{_signed(r['diff_lo_pct'])}, {_signed(r['diff_hi_pct'])}]"
                         + (" ~" if _flag(r.get("within_noise")) else ""))
            line += f"<td class='num'>{html.escape(text)}</td>"
        body.append(f"<tr>{line}</tr>")
    return _table("summary tasks", head, body)


def regime_html(frame: pd.DataFrame) -> str:
    """The per-layer regime table: one row per (model,) layer; per theorem and sublayer, the share of rows
    inside the regime and the median measured/estimated ratio."""
    if frame.empty:
        return "<p>No layer-wise theory rows.</p>"
    keys = list(dict.fromkeys(zip(frame["theorem"], frame["sublayer"])))
    several = frame["model"].nunique() > 1
    head = ("<th>model</th>" if several else "") + "<th>layer</th>" + "".join(
        f"<th>{html.escape(t.split(' · ')[0])}, {html.escape(s)}: inside / median ratio</th>" for t, s in keys)
    cells = {(r["model"], r["layer"], r["theorem"], r["sublayer"]): r for r in frame.to_dict("records")}
    body = []
    for model, layer in dict.fromkeys(zip(frame["model"], frame["layer"])):
        line = (f"<td>{html.escape(model)}</td>" if several else "") + f"<td class='num'>{int(layer)}</td>"
        for theorem, sublayer in keys:
            r = cells.get((model, layer, theorem, sublayer))
            text = "—" if r is None else f"{r['frac_inside']:.0%} / {r['median_ratio']:.2f}"
            line += f"<td class='num'>{html.escape(text)}</td>"
        body.append(f"<tr>{line}</tr>")
    return _table("summary regime", head, body)


def findings_html(lines: Sequence[str]) -> str:
    if not lines:
        return "<p>No findings: the run has no drop-mode layer-wise rows and no predictor data.</p>"
    return "<ul class='findings'>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def format_value(value, kind: str) -> str:
    """One number's text: relative changes as '+1.2%' / '−35.0%', KL with 3 significant digits, percentages
    with one decimal, '—' for none."""
    if kind == "text":
        return "—" if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else str(value)
    if not _finite(value):
        return "—"
    if kind == "relative":
        return f"{value * 100:+.1f}%".replace("-", "−")
    if kind == "nats":
        return f"{value:.3g}"
    if kind == "percent":
        return f"{value:.1f}%"
    if kind == "count":
        return str(int(value))
    raise ValueError(f"unknown number kind {kind!r}; known: text, relative, nats, percent, count")


def format_interval(lo, hi, kind: str) -> str:
    """' [lo, hi]' in the unit of ``kind`` (relative changes as signed percentages), '' when unknown."""
    if not (_finite(lo) and _finite(hi)):
        return ""
    if kind == "relative":
        return f" [{lo * 100:+.1f}, {hi * 100:+.1f}]".replace("-", "−")
    if kind == "percent":
        return f" [{lo:.1f}, {hi:.1f}]"
    return f" [{lo:.3g}, {hi:.3g}]"


def _cell(row: Mapping[str, Any], column: str) -> str:
    _, kind, interval, flag = COLUMNS[column]
    value = row.get(column)
    text = format_value(value, kind)
    if interval and _finite(value):
        text += format_interval(row.get(interval[0]), row.get(interval[1]), kind)
    noisy = flag is not None and _finite(value) and _flag(row.get(flag))
    if noisy:
        text += " ~"
    classes = [c for c, on in (("num", kind != "text"), ("noise", noisy)) if on]
    attribute = f" class='{' '.join(classes)}'" if classes else ""
    return f"<td{attribute}>{html.escape(text)}</td>"


def _table(css: str, head: str, body: list[str]) -> str:
    return f"<table class='{css}'>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _num(value, spec: str) -> str:
    return format(value, spec) if _finite(value) else "—"


def _signed(value) -> str:
    return f"{value:+.1f}".replace("-", "−") if _finite(value) else "—"


def _finite(value) -> bool:
    try:
        return value is not None and value is not pd.NA and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _flag(value) -> bool:
    """A nullable boolean cell: True only when set and true."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(value)
