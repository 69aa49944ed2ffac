"""The code-execution sandbox: bad programs are stopped and scored as failed, passes are proven, scoring carries on."""

import os
from pathlib import Path

import duckdb
import pytest

from prunescope.io import read_settings
from prunescope.tasks import records
from prunescope.tasks import sandbox_isolation as isolation
from prunescope.tasks.code import SandboxScorer, humaneval_programs, program_source
from prunescope.tasks.data import TASKS, snapshot_table
from prunescope.tasks.outputs import write_evaluation
from prunescope.tasks.runner import Evaluation, TaskEntry
from prunescope.tasks.sandbox import SandboxLimits, SandboxUnavailableError, require_isolation, run_program
from tests.test_sandbox_attacks import require_full_isolation

LIMITS = SandboxLimits(timeout_s=2, memory_mb=256, cpu_s=1)

LOOP = "while True:\n    pass\n"
SLEEP = "import time\ntime.sleep(60)\n"
ALLOCATE = "blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))\n"
SOCKET = "import socket\nsocket.socket()\n"
CAUGHT_CONNECT = ("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\n"
                  "except BaseException:\n    pass\n")
SUBPROCESS = "import subprocess\nsubprocess.run(['true'])\n"
RIGHT = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a * b\n"
TEST = "assert add(2, 3) == 5\n"


@pytest.fixture(autouse=True)
def _full_isolation():
    require_full_isolation()


@pytest.mark.parametrize("source, status", [
    (LOOP, "timeout"),  # CPU limit (1 s) before the wall-clock limit, or the wall clock on a busy machine
    (SLEEP, "timeout"),  # wall-clock limit
    (ALLOCATE, "memory"),
    (SOCKET, "blocked"),
    (CAUGHT_CONNECT, "blocked"),  # the program cannot catch its way past the guard
    (SUBPROCESS, "blocked"),
    ("assert 1 + 1 == 3\n", "failed"),
    ("exit()\nassert 1 + 1 == 3\n", "failed"),
    ("import os\nos._exit(0)\nassert 1 + 1 == 3\n", "failed"),
    ("def broken(:\n", "error"),
    ("undefined_name\n", "error"),
    ("assert 1 + 1 == 2\n", "passed"),
])
def test_programs_are_stopped_and_classified(source, status):
    result = run_program(source, LIMITS)
    assert result.status == status, (result.detail, result.stderr)
    assert result.passed == (status == "passed")
    assert result.wall_s < LIMITS.timeout_s + 2


@pytest.mark.parametrize("level", isolation.LEVELS)
def test_every_level_proves_passes_the_same_way(level):
    """The harness and its report are the same at every isolation level; only the walls around it differ."""
    if isolation.missing_for(level):
        pytest.skip("; ".join(isolation.missing_for(level)))
    limits = SandboxLimits(timeout_s=2, memory_mb=256, cpu_s=1, isolation=level)
    tricks = ("", "exit()\n", "import os\nos._exit(0)\n", "import atexit, os\natexit.register(os._exit, 0)\n")
    statuses = [run_program(trick + WRONG + TEST, limits).status for trick in tricks]
    assert statuses == ["failed"] * 4
    passed = run_program(RIGHT + TEST, limits)
    assert passed.status == "passed" and passed.isolation.startswith(level + ":"), passed
    assert run_program(SOCKET, limits).status == "blocked"


def test_program_runs_in_its_own_process_folder_and_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNESCOPE_SECRET", "x")
    source = (f"import os\nassert os.getpid() != {os.getpid()}\n"
              f"assert os.getcwd() != {str(tmp_path)!r}\n"
              "assert 'PRUNESCOPE_SECRET' not in os.environ\n"
              "open('left_behind.txt', 'w').write('x')\n")
    result = run_program(source, LIMITS)
    assert result.passed, result.stderr
    assert not Path(tmp_path, "left_behind.txt").exists()


def test_scorer_carries_on_after_bad_programs():
    scorer = SandboxScorer(LIMITS)
    assert scorer.isolation.startswith("full: ")
    scores = [scorer([TEST], [[program]]) for program in (LOOP, ALLOCATE, SOCKET, RIGHT, WRONG, "exit()\n" + WRONG)]
    assert scores == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    statuses = [scorer.outcomes[program_source(p, TEST)].status for p in (LOOP, ALLOCATE, SOCKET, RIGHT)]
    assert statuses == ["timeout", "memory", "blocked", "passed"]
    assert {outcome.isolation for outcome in scorer.outcomes.values()} == {scorer.isolation}


def test_missing_isolation_refuses_the_code_task(monkeypatch):
    """Without bubblewrap the default level is refused with a message naming what is missing and the opt-in."""
    monkeypatch.setattr(isolation, "bubblewrap", lambda: (None, "bubblewrap is not installed (no `bwrap` on PATH)"))
    with pytest.raises(SandboxUnavailableError, match=r"isolation: full is not available.*bubblewrap is not installed"
                                                      r".*set tasks\.sandbox\.isolation: none"):
        SandboxScorer(SandboxLimits())
    result = run_program(RIGHT, SandboxLimits())  # called directly: an error, never a weaker run
    assert result.status == "error" and "bubblewrap is not installed" in result.detail
    assert require_isolation("none").startswith("none:")


def test_an_unknown_level_is_a_clear_error():
    with pytest.raises(ValueError, match=r"tasks\.sandbox\.isolation: 'weak' is not one of full, namespaces, none"):
        SandboxLimits(isolation="weak")


@pytest.mark.parametrize("task", ["humaneval", "mbpp"])
def test_canonical_solutions_pass_and_wrong_ones_fail(task):
    """The snapshot's reference solutions pass lm-eval's tests through the sandbox; an empty body fails."""
    docs = snapshot_table(TASKS[task]).slice(0, 3).to_pylist()
    scorer = SandboxScorer(SandboxLimits())
    for doc in docs:
        if task == "humaneval":
            reference = f"{doc['test']}\ncheck({doc['entry_point']})"
            (right,), (wrong,) = humaneval_programs([[doc["canonical_solution"]], ["    pass\n"]], [doc, doc])
        else:
            reference = "\n".join(doc["test_list"])
            right, wrong = doc["code"], "def placeholder():\n    pass\n"
        assert scorer([reference], [right]) == 1.0, scorer.outcomes[program_source(right, reference)].stderr
        assert scorer([reference], [wrong]) == 0.0
        exits_early = "import sys\nsys.exit(0)\n" + (wrong if task == "mbpp" else "")
        assert scorer([reference], [exits_early]) == 0.0


def test_the_isolation_used_is_recorded_with_every_sample_and_in_the_task_file(tmp_path):
    scorer = SandboxScorer(LIMITS)
    assert scorer([TEST], [[RIGHT]]) == 1.0
    logged = {"filtered_resps": [RIGHT], "resps": [[RIGHT]], "target": TEST}  # lm-eval's logged sample, in part
    fields = records._generation_fields(logged, scorer)
    assert (fields["exec_status"], fields["exec_isolation"]) == ("passed", scorer.isolation)

    rows = [{"task": "humaneval", "subtask": "humaneval", "task_kind": "generative", "doc_id": 0, **fields}]
    evaluation = Evaluation(samples={"humaneval": rows}, seconds={"humaneval": 1.0}, cpu_seconds={"humaneval": 1.0})
    paths = {name: str(tmp_path / f"{name}.parquet") for name in ("humaneval", "summary")}
    write_evaluation(evaluation, [TaskEntry("humaneval", "generative")], model="m", variant="dense",
                     task_paths=[paths["humaneval"]], data_paths={}, summary_path=paths["summary"],
                     raw_path=str(tmp_path / "raw.json"), raw_samples_path=str(tmp_path / "raw.jsonl.gz"), settings={})
    assert read_settings(paths["humaneval"])["sandbox_isolation"] == [scorer.isolation]
    assert duckdb.sql(f"SELECT exec_isolation FROM '{paths['humaneval']}'").fetchall() == [(scorer.isolation,)]
