"""The metrics stage: from a probe table (Parquet) to the long metrics table, batch by batch.

Rows are read in Arrow record batches of ``chunk_rows`` so a paper-scale layer-wise table (hundreds of
thousands of 3.5k-dimensional vectors) never sits in memory at once. Generation tables of variants carry
only ``h_var``; their ``h_ref`` comes from the dense reference trajectory, joined on (prompt_id, step) —
steps a free-running variant decodes past the end of the dense run have no reference and are left out.
Subspace tables carry each prompt's own option ids (``option_tokens``, 2-5 per prompt); the metrics use
each row's own options.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from prunescope.io import read_settings, write_parquet
from prunescope.metrics.long_table import CONVENTIONS, KEY_COLUMNS, long_table
from prunescope.metrics.spaces import OPTION_PAD, Head, compute_metrics


def vectors(column: pa.ChunkedArray | pa.Array) -> torch.Tensor:
    """A ``list<float>`` column of equal-length vectors as an fp32 tensor [rows, dim] (no per-row copies)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        raise ValueError(f"vector column has {array.null_count} null rows")
    flat = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return torch.from_numpy(flat.reshape(len(array), -1).copy())


def option_matrix(column: pa.ChunkedArray | pa.Array) -> torch.Tensor:
    """A ``list<int>`` column of per-row option ids (2-5 each) as [rows, K] int64, K the longest row,
    shorter rows ending in :data:`prunescope.metrics.spaces.OPTION_PAD`."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        raise ValueError(f"option_tokens has {array.null_count} null rows")
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    matrix = np.full((len(array), int(lengths.max(initial=0))), OPTION_PAD, dtype=np.int64)
    matrix[np.arange(matrix.shape[1]) < lengths[:, None]] = array.flatten().to_numpy(zero_copy_only=False)
    return torch.from_numpy(matrix)


def _batches(probe_path: str | os.PathLike, reference_path, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    if reference_path is None:
        yield from pq.ParquetFile(probe_path).iter_batches(batch_size=chunk_rows)
        return
    # Generation probe of a variant: bring in h_ref from the dense reference trajectory.
    # (Arrow's join does not carry list columns, so the match is done on the keys and the vectors taken.)
    reference = pq.read_table(reference_path, columns=["prompt_id", "step", "h_ref"])
    row_of = {key: i for i, key in enumerate(zip(reference["prompt_id"].to_pylist(), reference["step"].to_pylist()))}
    table = pq.read_table(probe_path)
    matches = [row_of.get(key, -1) for key in zip(table["prompt_id"].to_pylist(), table["step"].to_pylist())]
    keep = pa.array([i for i, m in enumerate(matches) if m >= 0], pa.int64())
    h_ref = reference["h_ref"].take(pa.array([m for m in matches if m >= 0], pa.int64()))
    table = table.take(keep)
    table = table.set_column(table.schema.get_field_index("h_ref"), "h_ref", h_ref.cast(table.schema.field("h_ref").type))
    yield from table.to_batches(max_chunksize=chunk_rows)


def probe_metrics(
    probe_path: str | os.PathLike,
    head: Head,
    temperatures: Sequence[float],
    reference_path: str | os.PathLike | None = None,
    chunk_rows: int = 512,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """The long metrics table (:data:`prunescope.metrics.long_table.COLUMNS`) of one probe table."""
    frames = []
    head = head.to(torch.device(device))
    for batch in _batches(probe_path, reference_path, chunk_rows):
        if batch.num_rows == 0:
            continue
        option_ids = None
        if "option_tokens" in batch.schema.names:
            option_ids = option_matrix(batch.column("option_tokens")).to(device)
        metrics = compute_metrics(
            vectors(batch.column("h_ref")).to(device), vectors(batch.column("h_var")).to(device), head,
            temperatures=temperatures, option_ids=option_ids, chunk_rows=chunk_rows,
        )
        keys = batch.select(list(KEY_COLUMNS)).to_pandas()
        frames.append(long_table(keys, metrics))
    if not frames:
        raise ValueError(f"{probe_path}: no rows to compute metrics on")
    return pd.concat(frames, ignore_index=True)


def write_metrics(frame: pd.DataFrame, path: str | os.PathLike, probe_path: str | os.PathLike, settings: dict) -> None:
    """Write the metrics table with its conventions and the probe file's own settings as metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_parquet(table, path, {**settings, "conventions": CONVENTIONS, "probe_file": str(probe_path),
                                "probe_settings": read_settings(probe_path)})
