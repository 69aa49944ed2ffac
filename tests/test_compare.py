"""prunescope.compare: row-multiset comparison of two runs' Parquet files with DuckDB."""

import pyarrow as pa
import pyarrow.parquet as pq

from prunescope.compare import compare_runs


def write(root, relative, columns):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


ROWS = {"metric": ["kl", "kl", "cos"], "temperature": [1.0, 2.0, None], "value": [0.5, 0.25, 0.125],
        "h": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}


def test_same_rows_in_another_order_and_row_group_layout_are_identical(tmp_path):
    write(tmp_path / "a", "m/x.parquet", ROWS)
    reordered = {k: list(reversed(v)) for k, v in ROWS.items()}
    path = tmp_path / "b" / "m" / "x.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table(reordered), path, row_group_size=1)
    result = compare_runs(tmp_path / "a", tmp_path / "b")
    assert result.identical and [f.rows_before for f in result.files] == [3]


def test_one_changed_vector_element_is_found(tmp_path):
    write(tmp_path / "a", "x.parquet", ROWS)
    changed = {**ROWS, "h": [[1.0, 2.0], [3.0, 4.0 + 1e-7], [5.0, 6.0]]}
    write(tmp_path / "b", "x.parquet", changed)
    (file,) = compare_runs(tmp_path / "a", tmp_path / "b").files
    assert (file.only_before, file.only_after, file.identical) == (1, 1, False)


def test_a_duplicated_row_differs_and_missing_files_are_listed(tmp_path):
    write(tmp_path / "a", "x.parquet", ROWS)
    write(tmp_path / "a", "gone.parquet", ROWS)
    write(tmp_path / "b", "x.parquet", {k: v + v[:1] for k, v in ROWS.items()})
    write(tmp_path / "b", "new.parquet", ROWS)
    result = compare_runs(tmp_path / "a", tmp_path / "b")
    (file,) = result.files
    assert (file.only_before, file.only_after) == (0, 1)
    assert result.only_in_before == ["gone.parquet"] and result.only_in_after == ["new.parquet"]
    assert not result.identical and "DIFFERS x.parquet" in result.lines()[0]


def test_column_type_change_differs(tmp_path):
    write(tmp_path / "a", "x.parquet", {"v": pa.array([1, 2], pa.int32())})
    write(tmp_path / "b", "x.parquet", {"v": pa.array([1, 2], pa.int64())})
    (file,) = compare_runs(tmp_path / "a", tmp_path / "b").files
    assert not file.same_columns and not file.identical


def test_exclusion_leaves_out_the_rows_a_change_is_meant_to_alter(tmp_path):
    write(tmp_path / "a", "m.parquet", ROWS)
    write(tmp_path / "a", "other.parquet", {"value": [1.0]})
    # The "after" run stores the T-independent metric once with temperature null (issue 14, item 7).
    write(tmp_path / "b", "m.parquet", {"metric": ["kl", "kl", "cos"], "temperature": pa.array([None, None, None], pa.float64()),
                                         "value": [0.5, 0.25, 0.125], "h": ROWS["h"]})
    write(tmp_path / "b", "other.parquet", {"value": [1.0]})
    assert not compare_runs(tmp_path / "a", tmp_path / "b").identical
    kept = compare_runs(tmp_path / "a", tmp_path / "b", exclude="metric = 'kl'", exclude_columns=("metric",))
    assert kept.identical
    assert [f.rows_before for f in kept.files] == [1, 1]


def test_skipped_prefixes_are_not_compared(tmp_path):
    write(tmp_path / "a", "report/summary.parquet", ROWS)
    write(tmp_path / "b", "report/summary.parquet", {"value": [9.0]})
    assert compare_runs(tmp_path / "a", tmp_path / "b", skip=("report/",)).files == []


def test_an_ignored_added_column_leaves_the_other_columns_compared(tmp_path):
    write(tmp_path / "a", "x.parquet", {"doc_id": [1, 2], "score": [0.5, 1.0]})
    write(tmp_path / "b", "x.parquet", {"doc_id": [1, 2], "score": [0.5, 1.0], "exec_isolation": ["full", "full"]})
    write(tmp_path / "c", "x.parquet", {"doc_id": [1, 2], "score": [0.5, 0.0], "exec_isolation": ["full", "full"]})
    assert not compare_runs(tmp_path / "a", tmp_path / "b").identical
    assert compare_runs(tmp_path / "a", tmp_path / "b", ignore_columns=("exec_isolation",)).identical
    (file,) = compare_runs(tmp_path / "a", tmp_path / "c", ignore_columns=("exec_isolation",)).files
    assert (file.only_before, file.only_after) == (1, 1)


def test_the_same_columns_in_another_order_compare_by_name(tmp_path):
    write(tmp_path / "a", "x.parquet", {"a": [1.0, 2.0], "b": [3.0, 4.0]})
    write(tmp_path / "b", "x.parquet", {"b": [3.0, 4.0], "a": [1.0, 2.0]})
    write(tmp_path / "c", "x.parquet", {"b": [1.0, 2.0], "a": [3.0, 4.0]})
    assert compare_runs(tmp_path / "a", tmp_path / "b").identical
    assert not compare_runs(tmp_path / "a", tmp_path / "c").identical
