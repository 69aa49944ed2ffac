"""The report page: one self-contained HTML file that works offline.

Each figure's SVG is embedded as a base64 ``data:`` image (inlining several SVGs as markup would make
their clip-path ids collide), its caption is rendered from reStructuredText with docutils, and the
summary table is inlined. The page loads nothing: no script, stylesheet, font or image from anywhere.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from docutils.core import publish_parts

from prunescope.io import atomic_path
from prunescope.report.summary import findings_html, regime_html, summary_html, tasks_html

STYLE = """
body { font-family: Helvetica, Arial, sans-serif; max-width: 1500px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
img.figure { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
.caption { max-width: 60em; } .caption p { margin: 0.4em 0; }
.files { color: #666; font-size: 0.9em; }
table.summary { border-collapse: collapse; margin: 0.5em 0; }
table.summary th, table.summary td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
table.summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary tr.kind th { background: #f3f3f3; text-align: left; font-weight: normal; font-style: italic; }
table.summary td.noise { color: #888; }
nav ol { columns: 2; }
"""


@dataclass(frozen=True)
class PageFigure:
    """A figure on the page: its name (anchor and file stem), title, SVG file and caption file (.rst)."""

    name: str
    title: str
    svg: str | os.PathLike
    caption: str | os.PathLike


def caption_html(rst: str) -> str:
    """A caption written in reStructuredText as an HTML fragment (body only, no stylesheet)."""
    parts = publish_parts(rst, writer="html5", settings_overrides={
        "report_level": 5, "halt_level": 5, "embed_stylesheet": False, "stylesheet_path": "", "math_output": "HTML",
    })  # fmt: skip
    return parts["body"]


def svg_image(path: str | os.PathLike, alt: str) -> str:
    """An <img> whose source is the SVG file itself, base64-encoded into the page."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def render_page(
    figures: Sequence[PageFigure],
    summary: pd.DataFrame,
    summary_caption: str,
    skipped: Mapping[str, str],
    settings: Mapping[str, object],
    tasks: pd.DataFrame | None = None,
    findings: Sequence[str] = (),
    regime: pd.DataFrame | None = None,
) -> str:
    """The page's HTML. ``skipped`` maps the titles of figures not drawn to the reason; ``settings``
    (e.g. models, variants, temperature) is listed under the heading. The summary section holds the
    per-variant table, the ``findings`` sentences, the per-task table (``tasks``) and the per-layer regime
    table (``regime``), each when given."""
    nav = "".join(f'<li><a href="#{f.name}">{html.escape(f.title)}</a></li>' for f in figures)
    listing = "".join(
        f"<li><b>{html.escape(str(key))}</b>: {html.escape(_text(value))}</li>" for key, value in settings.items()
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>prunescope report</title><style>{STYLE}</style></head><body>",
        "<h1>prunescope report</h1>",
        "<p>Where pruning damage appears along embedding → logit → probability space, and which tasks survive it "
        "(a reimplementation of He et al., <i>Demystifying When Pruning Works via Representation Hierarchies</i>, "
        "arXiv 2603.24652).</p>",
        f"<ul>{listing}</ul>",
        f'<nav><ol><li><a href="#summary">Summary table</a></li>{nav}</ol></nav>',
        '<section id="summary"><h2>Summary table</h2>',
        summary_html(summary),
        f'<div class="caption">{caption_html(summary_caption)}</div>',
        '<p class="files">Data: <a href="summary.csv">summary.csv</a>, summary.parquet</p>',
        "<h3>Findings</h3>",
        findings_html(findings),
    ]
    if tasks is not None:
        parts += ["<h3>Per task</h3>", tasks_html(tasks),
                  '<p class="files">Data: <a href="summary_tasks.csv">summary_tasks.csv</a></p>']
    if regime is not None:
        parts += ["<h3>Where the theory holds, per layer</h3>",
                  "<p>Per layer and sublayer (each dropped alone): the share of its rows whose perturbation size lies "
                  "inside the regime found on this run, and its median measured/estimated ratio.</p>",
                  regime_html(regime), '<p class="files">Data: <a href="regime_layers.csv">regime_layers.csv</a></p>']
    parts.append("</section>")
    for figure in figures:
        parts += [
            f'<section id="{figure.name}"><h2>{html.escape(figure.title)}</h2>',
            svg_image(figure.svg, figure.title),
            f'<div class="caption">{caption_html(Path(figure.caption).read_text(encoding="utf-8"))}</div>',
            f'<p class="files">Data: <a href="{figure.name}.csv">{figure.name}.csv</a> · '
            f'<a href="{figure.name}.png">PNG</a> · <a href="{figure.name}.svg">SVG</a> · '
            f"query: reports/{figure.name}.sql</p></section>",
        ]
    if skipped:
        items = "".join(f"<li><b>{html.escape(t)}</b>: {html.escape(why)}</li>" for t, why in skipped.items())
        parts.append(f'<section id="not-drawn"><h2>Not drawn</h2><ul>{items}</ul></section>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def read_table(path: str | os.PathLike) -> pd.DataFrame | None:
    """A CSV table of the summary job, or None when it holds no rows (e.g. no task or theory data)."""
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    return None if frame.empty else frame


def write_page(path: str | os.PathLike, *args, **kwargs) -> None:
    """Render the page (arguments of :func:`render_page`) and write it atomically to ``path``."""
    page = render_page(*args, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")


def _text(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)
