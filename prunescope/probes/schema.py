"""Parquet schemas of the probe outputs, and the writer that fills them.

One row per recorded vector pair, long format, with these columns:

======================  =======================  =====================================================
column                  type                     meaning
======================  =======================  =====================================================
model, variant          string                   config model key; variant name (``dense`` for references)
probe                   string                   ``layerwise`` | ``generation`` | ``subspace``
probe_set               string                   config probe-set name
prompt_id               string                   e.g. ``arc-easy/Mercury_7220990``, ``gsm8k/12``, ``open/3``
step                    int32                    decoding step: 0 = prefill forward, t = forward over the
                                                 token chosen at step t - 1 (the subspace probe's single
                                                 forward is step 0); -1 = not applicable
layer                   int32                    decoder layer index; -1 = not a layer (final post-norm state)
sublayer                string                   ``attn`` | ``mlp`` (layerwise), ``final`` (the others)
mode                    string                   layerwise ``drop`` | ``pruned``; generation ``reference`` |
                                                 ``free`` | ``forced``; subspace ``reference`` |
                                                 ``forward``
token_ref, token_var    int64                    the token each model chose at that step (-1 = none)
h_ref, h_var            list<float32|float16>    dense / variant vector at the last position; null where the
                                                 row has none (generation: reference rows carry only h_ref,
                                                 variant rows only h_var; subspace reference rows only h_ref)
option_tokens           list<int64>              subspace only: ids of the prompt's option letters A, B, ... in
                                                 order (2-5 per row: PIQA 2, ARC 3-5, HellaSwag 4)
option_form             string                   subspace only: which spelling of the letters those ids are,
                                                 ``bare`` (``"A"``) or ``spaced`` (``" A"``), chosen per prompt
                                                 by :mod:`prunescope.probes.options`
answer                  string                   subspace only: gold letter (``""`` if unknown)
======================  =======================  =====================================================

Key and token columns are never null (-1 marks "not applicable"), so DuckDB joins and filters need no
``IS NULL`` cases. Vectors are stored as ``list<float32>`` by default; ``vector_dtype='float16'`` halves the
file (DuckDB reads both as ``FLOAT[]``). Settings (decoding, chat template, dtypes, conventions) go into
the file's metadata through :func:`prunescope.io.write_parquet`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from prunescope.io import write_parquet

PROBES = ("layerwise", "generation", "subspace")
MODES = {
    "layerwise": ("drop", "pruned"),
    "generation": ("reference", "free", "forced"),
    "subspace": ("reference", "forward"),
}
VECTOR_DTYPES = {"float32": (pa.float32(), np.float32), "float16": (pa.float16(), np.float16)}

KEY_FIELDS = [
    pa.field("model", pa.string(), nullable=False),
    pa.field("variant", pa.string(), nullable=False),
    pa.field("probe", pa.string(), nullable=False),
    pa.field("probe_set", pa.string(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("step", pa.int32(), nullable=False),
    pa.field("layer", pa.int32(), nullable=False),
    pa.field("sublayer", pa.string(), nullable=False),
    pa.field("mode", pa.string(), nullable=False),
]
TOKEN_FIELDS = [pa.field("token_ref", pa.int64(), nullable=False), pa.field("token_var", pa.int64(), nullable=False)]
EXTRA_FIELDS = {
    "subspace": [
        pa.field("option_tokens", pa.list_(pa.int64()), nullable=False),
        pa.field("option_form", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
    ]
}

CONVENTIONS = {
    "position": "last token of each forward",
    "step": "0 = prefill forward (chooses the first new token); t = forward over the token chosen at t-1; -1 n/a",
    "layer": "decoder layer index; -1 = final post-norm state, not a layer",
    "layerwise_vectors": "residual stream after the sublayer: h_ref dense, h_var variant sublayer on the same "
    "input (drop: the sublayer's input itself); no final norm applied",
    "final_vectors": "hidden state after the final norm (what the LM head reads)",
}


def probe_schema(probe: str, vector_dtype: str = "float32") -> pa.Schema:
    """The Arrow schema of ``probe``'s table with vectors stored as ``vector_dtype``."""
    _check_choice("probe", probe, PROBES)
    _check_choice("vector_dtype", vector_dtype, tuple(VECTOR_DTYPES))
    vector = pa.list_(VECTOR_DTYPES[vector_dtype][0])
    vectors = [pa.field("h_ref", vector), pa.field("h_var", vector)]
    return pa.schema(KEY_FIELDS + TOKEN_FIELDS + vectors + EXTRA_FIELDS.get(probe, []))


def records_to_table(
    records: Sequence[dict], model: str, variant: str, probe: str, probe_set: str, vector_dtype: str = "float32"
) -> pa.Table:
    """Probe records (dicts from the probe functions) as a table of :func:`probe_schema`."""
    schema = probe_schema(probe, vector_dtype)
    bad_modes = sorted({r["mode"] for r in records} - set(MODES[probe]))
    if bad_modes:
        raise ValueError(f"{probe} records have modes {bad_modes}; allowed: {MODES[probe]}")
    n = len(records)
    columns = {"model": [model] * n, "variant": [variant] * n, "probe": [probe] * n, "probe_set": [probe_set] * n}
    for field in schema:
        if field.name in columns:
            continue
        if field.name in ("h_ref", "h_var"):
            columns[field.name] = _vector_column([r[field.name] for r in records], field.type, vector_dtype)
        else:
            missing = [r.get("prompt_id") for r in records if field.name not in r]
            if missing:
                raise ValueError(f"{probe} records lack the column {field.name!r} (prompts {missing[:5]})")
            columns[field.name] = [r[field.name] for r in records]
    return pa.table(columns, schema=schema)


def probe_settings(
    *,
    decoding: dict | None,
    chat_template: bool,
    model_dtype: str,
    vector_dtype: str = "float32",
    **extra,
) -> dict:
    """The metadata a probe file carries: decoding (``DecodingSettings.as_settings()``), chat-template use,
    the model dtype, the vector storage dtype and the conventions (the subspace probe's option-token form
    is a column, per prompt)."""
    return {
        "decoding": decoding,
        "chat_template": chat_template,
        "model_dtype": model_dtype,
        "vector_dtype": vector_dtype,
        "conventions": CONVENTIONS,
        **extra,
    }


def write_probe_parquet(
    records: Sequence[dict],
    path: str | os.PathLike,
    *,
    model: str,
    variant: str,
    probe: str,
    probe_set: str,
    settings: dict,
    vector_dtype: str = "float32",
) -> pa.Table:
    """Build the table and write it atomically with ``settings`` (see :func:`probe_settings`)."""
    table = records_to_table(records, model, variant, probe, probe_set, vector_dtype)
    write_parquet(table, path, {**settings, "vector_dtype": vector_dtype})
    return table


def _vector_column(vectors: list, arrow_type: pa.DataType, vector_dtype: str) -> pa.Array:
    """A list column from 1-D tensors/arrays, ``None`` where a row has no vector."""
    present = np.array([v is not None for v in vectors], dtype=bool)
    if not present.any():
        return pa.nulls(len(vectors), arrow_type)
    rows = [_as_numpy(v) for v in vectors if v is not None]
    dims = {row.shape for row in rows}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise ValueError(f"vectors of one column must all be 1-D of one length, got shapes {sorted(dims)}")
    (dim,) = dims.pop()
    values = np.zeros((len(vectors), dim), dtype=VECTOR_DTYPES[vector_dtype][1])
    values[present] = np.stack(rows)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), dim, mask=pa.array(~present))
    return fixed.cast(arrow_type)


def _check_choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {allowed}")


def _as_numpy(vector) -> np.ndarray:
    """A 1-D fp32 array from a tensor (any dtype or device) or an array-like."""
    if hasattr(vector, "detach"):
        vector = vector.detach().float().cpu().numpy()
    return np.asarray(vector, dtype=np.float32)
