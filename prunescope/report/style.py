"""Shared look of the report's charts: one colour per space, per drop unit, per method and per variant.

The variant colours are fixed by the configured variant list (not by what one figure happens to show),
so a variant has the same colour in every figure of a report.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from prunescope.report.sources import variant_table

SPACES = ("embedding", "logit", "probability")
SPACE_COLORS = ("#1f77b4", "#ff7f0e", "#d62728")  # blue h, orange z, red p: the paper's order of fragility
UNIT_COLORS = {"attn": "#1f77b4", "mlp": "#2ca02c", "block": "#7f7f7f"}
METHOD_COLORS = {"dense": "#4d4d4d", "magnitude": "#8c564b", "wanda": "#1f77b4", "sparsegpt": "#ff7f0e"}
SERIES_COLORS = {"measured": "#222222", "estimate": "#d62728", "embedding h": "#1f77b4", "logit z": "#ff7f0e"}
SIDE_COLORS = {"dense": "#4d4d4d", "variant": "#d62728"}
DENSE_COLOR = "#4d4d4d"
# Colours for the non-dense variants in display order: the saturated tableau colours first (no grey,
# which is dense's), then their light partners.
VARIANT_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)  # fmt: skip

STEP_AXIS = alt.Axis(tickMinStep=1, format="d")  # decoding steps and layer counts are integers
PANEL_WIDTH = 230
PANEL_HEIGHT = 150


def scale(colors: dict[str, str] | Sequence, domain: Sequence[str] | None = None, present=None) -> alt.Scale:
    """A categorical scale from a {value: colour} mapping (or parallel ``colors`` and ``domain``).

    ``present`` (values in the data) trims the domain, so legends list only what is drawn while each
    value keeps the colour the full mapping gives it.
    """
    pairs = dict(colors) if isinstance(colors, dict) else dict(zip(domain, colors))
    if present is not None:
        shown = {str(v) for v in present}
        pairs = {value: color for value, color in pairs.items() if value in shown}
    return alt.Scale(domain=list(pairs), range=list(pairs.values()))


def variant_colors(variants: Sequence[str]) -> dict[str, str]:
    """{variant label: colour} for every configured variant; dense is dark grey."""
    labels = variant_table(variants)["label"].tolist()
    others = [label for label in labels if label != "dense"]
    colors = {"dense": DENSE_COLOR}
    colors.update({label: VARIANT_PALETTE[i % len(VARIANT_PALETTE)] for i, label in enumerate(others)})
    return colors


def with_panel(frame: pd.DataFrame, column: str, name: str = "panel") -> pd.DataFrame:
    """``frame`` with a facet column: ``column``, prefixed by the model when the frame has several models."""
    if frame["model"].nunique() > 1:
        values = frame["model"].astype(str) + " · " + frame[column].astype(str)
    else:
        values = frame[column].astype(str)
    return frame.assign(**{name: values})


def ordered(frame: pd.DataFrame, column: str) -> list[str]:
    """The distinct values of ``column`` in the order they first appear (the query's ORDER BY)."""
    return list(dict.fromkeys(frame[column].astype(str)))


def count_text(frame: pd.DataFrame, column: str = "n_prompts", unit: str = "prompts") -> str:
    """'N = 16 prompts' (or 'N = 12–16 prompts' when the points rest on different counts) for a title."""
    counts = pd.to_numeric(frame[column], errors="coerce").dropna() if column in frame.columns else pd.Series([])
    if counts.empty:
        return f"N unknown {unit}"
    lo, hi = int(counts.min()), int(counts.max())
    return f"N = {lo} {unit}" if lo == hi else f"N = {lo}–{hi} {unit}"


def finish(chart: alt.TopLevelMixin, title: str, subtitle: str | None = None) -> alt.TopLevelMixin:
    """Title, font sizes and a white background, the same for every figure."""
    return (
        chart.properties(title=alt.TitleParams(title, subtitle=subtitle or [], anchor="start", fontSize=15))
        .configure(background="white")
        .configure_axis(labelFontSize=11, titleFontSize=12)
        .configure_header(labelFontSize=12, titleFontSize=12)
        .configure_legend(labelFontSize=11, titleFontSize=12, orient="right")
    )
