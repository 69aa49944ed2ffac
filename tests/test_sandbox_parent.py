"""The evaluator's side of the sandbox cannot be hurt: its own failures are one sample's `error`, its reads are
bounded, it leaks no descriptor or cgroup, and its cleanup of a hostile folder cannot raise."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from prunescope.tasks import sandbox
from prunescope.tasks import sandbox_isolation as isolation
from prunescope.tasks.code import SandboxScorer
from prunescope.tasks.sandbox import SandboxLimits, run_program
from prunescope.tasks.sandbox_process import remove_tree
from tests.test_sandbox_attacks import GOOD, LIMITS, WRONG, assert_healthy, require_full_isolation, run_cgroups_left

TEST = "assert add(2, 3) == 5\n"
RIGHT, BAD = GOOD.replace(TEST, ""), WRONG.replace(TEST, "")


@pytest.fixture(autouse=True)
def _full_isolation():
    require_full_isolation()


def test_a_failure_inside_run_program_is_that_sample_s_error(monkeypatch):
    scorer = SandboxScorer(LIMITS)

    def refuse(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(sandbox.subprocess, "Popen", refuse)
    assert scorer([TEST], [RIGHT]) == 0.0
    (outcome,) = scorer.outcomes.values()
    assert outcome.status == "error" and "sandbox failure" in outcome.detail and "Too many open files" in outcome.detail
    assert run_cgroups_left() == []  # made before the failure, removed after it
    monkeypatch.undo()
    assert scorer([TEST], [RIGHT + "\n"]) == 1.0  # the next sample is scored as usual
    assert_healthy()


def test_a_sandbox_that_does_not_start_is_an_error_not_a_failure(monkeypatch):
    monkeypatch.setattr(isolation, "sandbox_python", lambda: "/nonexistent/python3")
    result = run_program(GOOD, LIMITS)
    assert result.status == "error" and "did not start" in result.detail, result
    assert run_cgroups_left() == []
    monkeypatch.undo()
    assert_healthy()


def test_no_descriptor_or_cgroup_leaks():
    before = sorted(os.listdir("/proc/self/fd"))
    for source in (GOOD, WRONG, "import time\ntime.sleep(5)\n", "import os\nos.close(2)\nos.close(4)\n" + GOOD):
        run_program(source, SandboxLimits(**{**LIMITS.__dict__, "timeout_s": 1}))
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert run_cgroups_left() == []


def test_a_program_that_closes_its_streams_and_waits_is_timed_out_on_time():
    source = ("import os, time\nfor fd in range(0, 10):\n    try:\n        os.close(fd)\n"
              "    except OSError:\n        pass\ntime.sleep(30)\n")
    result = run_program(source, SandboxLimits(**{**LIMITS.__dict__, "timeout_s": 1}))
    assert result.status == "timeout" and result.wall_s < 2.5, result


@pytest.mark.parametrize("level", ["namespaces", "none"])
def test_a_leftover_holding_the_pipes_does_not_hold_the_evaluator(level):
    """Without a cgroup, a child that keeps stderr open after the program ends is killed with the session."""
    source = ("import ctypes, time\nlibc = ctypes.CDLL(None)\nif libc.fork() == 0:\n    time.sleep(30)\n" + GOOD)
    result = run_program(source, SandboxLimits(**{**LIMITS.__dict__, "isolation": level}))
    assert result.status == "passed" and result.wall_s < 2.0, result


def hostile_folder(top: Path, outside: Path) -> None:
    deep = top
    for _ in range(1500):  # (os.makedirs itself recurses too deep for this)
        deep = deep / "d"
        deep.mkdir()
    os.mkfifo(top / "stderr.txt")
    os.symlink("/dev/zero", top / "zero")
    os.symlink(outside, top / "outside")
    (top / "locked").mkdir()
    (top / "locked" / "file").write_text("x")
    os.chmod(top / "locked", 0)


def test_cleanup_of_a_hostile_folder_cannot_raise_or_follow_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    # On tmpfs where there is one: this disk takes ~3 ms per rmdir, which is not what the test is about.
    top = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp_path))
    hostile_folder(top, outside)
    remove_tree(str(top))
    assert not top.exists()
    assert (outside / "keep.txt").read_text() == "x"


def test_isolation_none_cleans_its_folder_after_a_hostile_program(tmp_path):
    base = Path(tempfile.gettempdir())
    before = set(base.glob("prunescope-sandbox-*"))
    source = ("import os\nos.mkfifo('stderr.txt')\nos.symlink('/dev/zero', 'program.py')\n"
              "for _ in range(300):\n    os.mkdir('d')\n    os.chdir('d')\n" + WRONG)
    result = run_program(source, SandboxLimits(**{**LIMITS.__dict__, "isolation": "none"}))
    assert result.status == "failed", result
    assert set(base.glob("prunescope-sandbox-*")) - before == set()
