"""Metrics in the embedding, logit and probability spaces (paper §3, §6, §8.2–8.4), as pure functions.

:mod:`.spaces` computes per-row tensors from (h_ref, h_var, head, temperatures), with its passes over
the vocabulary in :mod:`.fused` and the logit-space sums of a linear head in :mod:`.gram`;
:mod:`.long_table` builds the output head from a model and turns the tensors plus the probe's key
columns into the tidy long-format table the metrics stage writes; :mod:`.head_loading` reads that head
straight from a checkpoint without loading the model.
"""

from prunescope.metrics.head_loading import MissingHeadTensorError, load_head
from prunescope.metrics.long_table import COLUMNS, CONVENTIONS, KEY_COLUMNS, head_from_model, long_table
from prunescope.metrics.spaces import (
    OPTION_PAD,
    PROBABILITY_METRICS,
    SUBSPACE_METRICS,
    TEMPERATURE_FREE,
    VECTOR_METRICS,
    Head,
    RowMetrics,
    compute_metrics,
    probability_metrics,
    subspace_metrics,
    vector_metrics,
)

__all__ = [
    "COLUMNS",
    "CONVENTIONS",
    "KEY_COLUMNS",
    "MissingHeadTensorError",
    "OPTION_PAD",
    "PROBABILITY_METRICS",
    "SUBSPACE_METRICS",
    "TEMPERATURE_FREE",
    "VECTOR_METRICS",
    "Head",
    "RowMetrics",
    "compute_metrics",
    "head_from_model",
    "load_head",
    "long_table",
    "probability_metrics",
    "subspace_metrics",
    "vector_metrics",
]
