"""Compare the Parquet outputs of two runs row by row with DuckDB: did a change of code change a result?

For every ``*.parquet`` file under the two result folders (matched by relative path) it asks DuckDB for the
rows of one table missing from the other, both ways, as multisets (``EXCEPT ALL``), so row order, file
metadata and the Parquet writer's encoding do not matter and a duplicated row does. Column names and
types must match too. Vector columns (lists of floats) are compared element by element, exactly: a
refactoring that claims "behaviour unchanged" must give the same bits.

``exclude`` optionally leaves out, on both sides, the rows that a change is meant to alter: an SQL
predicate (for example ``metric IN ('rms_dz', 'var_uniform')``) applied to the tables that have every one
of ``exclude_columns``. ``ignore_columns`` are dropped from both sides where present: a column a change
added on purpose (say, a new per-sample field) does not hide whether every other column kept its values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class FileComparison:
    """One relative path: rows on each side, rows only on each side, and whether the columns match."""

    path: str
    rows_before: int
    rows_after: int
    only_before: int
    only_after: int
    same_columns: bool

    @property
    def identical(self) -> bool:
        return self.same_columns and self.only_before == 0 and self.only_after == 0


@dataclass(frozen=True)
class RunComparison:
    files: list[FileComparison]
    only_in_before: list[str]
    only_in_after: list[str]

    @property
    def identical(self) -> bool:
        return all(f.identical for f in self.files)

    def lines(self) -> list[str]:
        """A readable report: one line per differing file, then the totals."""
        out = [f"DIFFERS {f.path}: rows {f.rows_before} -> {f.rows_after}, only before {f.only_before}, "
               f"only after {f.only_after}" + ("" if f.same_columns else ", columns differ")
               for f in self.files if not f.identical]
        out += [f"only in before: {p}" for p in self.only_in_before]
        out += [f"only in after: {p}" for p in self.only_in_after]
        rows = sum(f.rows_before for f in self.files)
        same = sum(f.identical for f in self.files)
        out.append(f"{same} of {len(self.files)} shared Parquet files identical ({rows} rows before); "
                   f"{len(self.only_in_before)} only before, {len(self.only_in_after)} only after")
        return out


def parquet_files(root: str | os.PathLike, skip: tuple[str, ...] = ()) -> set[str]:
    """Relative paths of the Parquet files under ``root``, without those under a ``skip`` prefix."""
    root = Path(root)
    found = {p.relative_to(root).as_posix() for p in root.rglob("*.parquet")}
    return {p for p in found if not any(p.startswith(prefix) for prefix in skip)}


def compare_runs(before: str | os.PathLike, after: str | os.PathLike, exclude: str | None = None,
                 exclude_columns: tuple[str, ...] = (), skip: tuple[str, ...] = (),
                 ignore_columns: tuple[str, ...] = ()) -> RunComparison:
    """Compare every Parquet file the two folders share (see the module doc)."""
    left, right = parquet_files(before, skip), parquet_files(after, skip)
    connection = duckdb.connect()
    files = [compare_file(connection, Path(before) / p, Path(after) / p, p, exclude, exclude_columns, ignore_columns)
             for p in sorted(left & right)]
    return RunComparison(files, sorted(left - right), sorted(right - left))


def compare_file(connection: duckdb.DuckDBPyConnection, before: Path, after: Path, label: str,
                 exclude: str | None = None, exclude_columns: tuple[str, ...] = (),
                 ignore_columns: tuple[str, ...] = ()) -> FileComparison:
    """Row-multiset comparison of two Parquet files."""
    columns_before = {c: t for c, t in _columns(connection, before).items() if c not in ignore_columns}
    columns_after = {c: t for c, t in _columns(connection, after).items() if c not in ignore_columns}
    applies = exclude and all(c in columns_before and c in columns_after for c in exclude_columns)
    where = f" WHERE NOT ({exclude})" if applies else ""
    # EXCEPT ALL matches columns by position: both sides are selected in the before file's order.
    a = f"(SELECT {_select(columns_before)} FROM read_parquet('{_quote(before)}'){where})"
    b = f"(SELECT {_select(columns_before if columns_before == columns_after else columns_after)} " \
        f"FROM read_parquet('{_quote(after)}'){where})"
    rows_before = connection.execute(f"SELECT count(*) FROM {a}").fetchone()[0]
    rows_after = connection.execute(f"SELECT count(*) FROM {b}").fetchone()[0]
    if columns_before != columns_after:
        return FileComparison(label, rows_before, rows_after, rows_before, rows_after, False)
    only_before = connection.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
    only_after = connection.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0]
    return FileComparison(label, rows_before, rows_after, only_before, only_after, True)


def _columns(connection, path: Path) -> dict[str, str]:
    described = connection.execute(f"DESCRIBE SELECT * FROM read_parquet('{_quote(path)}')").fetchall()
    return {name: dtype for name, dtype, *_ in described}


def _select(columns: dict[str, str]) -> str:
    return ", ".join('"' + name.replace('"', '""') + '"' for name in columns)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
