"""Outputs appear only when complete: an interrupted write leaves nothing that looks finished."""

import pyarrow as pa
import pytest

from prunescope.io import atomic_path, read_settings, write_json, write_parquet


def test_failed_write_leaves_no_file_and_no_temporaries(tmp_path):
    target = tmp_path / "out" / "table.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a table")
            raise RuntimeError("killed mid-way")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_directory_write_keeps_the_previous_complete_output(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "partial.safetensors").write_text("x")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_parquet_and_json_carry_their_settings(tmp_path):
    write_parquet(pa.table({"x": [1, 2]}), tmp_path / "t.parquet", {"seed": 3, "name": "a"})
    assert read_settings(tmp_path / "t.parquet") == {"seed": 3, "name": "a"}
    write_json({"k": 1}, tmp_path / "s.json")
    assert (tmp_path / "s.json").read_text().strip() == '{\n  "k": 1\n}'


def test_leftovers_of_a_killed_write_are_removed_by_the_next_attempt(tmp_path):
    """SIGKILL skips every cleanup: the retried job removes the dead attempt's temporary checkpoint,
    and only its own output's (a sibling output with a longer name is someone else's)."""
    target = tmp_path / "model"
    stale = tmp_path / ".model.partial-dead1234" / "model"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"\0" * 1024)
    other = tmp_path / ".model.json.partial-live5678"
    other.mkdir()
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.json.partial-live5678", "model"]
