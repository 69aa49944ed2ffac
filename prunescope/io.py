"""Atomic output writing and self-describing Parquet.

Every file a stage writes appears only once it is complete: it is written under a temporary name in
the same folder and moved into place with :func:`os.replace`, so an interrupted job never leaves a file
that looks finished. Parquet files carry their settings as JSON under the key ``prunescope`` of the
schema's key-value metadata, so a table explains itself without the config.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"prunescope"


PARTIAL = ".partial-"  # marks the temporary sibling an output is written into


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it onto ``path`` only if the block succeeds.

    Works for files and directories alike: whatever the block creates at the yielded path replaces
    ``path`` at the end.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A job killed mid-write (preemption, SIGKILL) cannot clean up after itself; Snakemake never runs two
    # jobs for one output, so a temporary sibling found now is such a leftover (possibly a whole checkpoint).
    for stale in target.parent.glob(f".{target.name}{PARTIAL}*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL}", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_parquet(table: pa.Table, path: str | os.PathLike, settings: dict[str, Any]) -> None:
    """Write ``table`` atomically (zstd) with ``settings`` as JSON metadata."""
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(settings, sort_keys=True, default=str).encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The settings a file was written with (see :func:`write_parquet`)."""
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise ValueError(f"{path}: no prunescope settings in its Parquet metadata")
    return json.loads(meta[METADATA_KEY])


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
