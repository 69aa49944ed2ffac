"""The code-execution sandbox: bad programs are stopped and scored as failed, and scoring carries on."""

import os
from pathlib import Path

import pytest

from prunescope.tasks.code import SandboxScorer, humaneval_programs, program_source
from prunescope.tasks.data import TASKS, snapshot_table
from prunescope.tasks.sandbox import SandboxLimits, network_namespace_prefix, run_program

LIMITS = SandboxLimits(timeout_s=2, memory_mb=512, cpu_s=1)

LOOP = "while True:\n    pass\n"
SLEEP = "import time\ntime.sleep(60)\n"
ALLOCATE = "blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))\n"
SOCKET = "import socket\nsocket.socket()\n"
CAUGHT_CONNECT = ("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\n"
                  "except BaseException:\n    pass\n")
SUBPROCESS = "import subprocess\nsubprocess.run(['true'])\n"


@pytest.mark.parametrize("source, status", [
    (LOOP, "timeout"),  # CPU limit (1 s) before the wall-clock limit
    (SLEEP, "timeout"),  # wall-clock limit
    (ALLOCATE, "memory"),
    (SOCKET, "blocked"),
    (CAUGHT_CONNECT, "blocked"),  # the program cannot catch its way past the guard
    (SUBPROCESS, "blocked"),
    ("assert 1 + 1 == 3\n", "failed"),
    ("this is not python\n", "error"),
    ("assert 1 + 1 == 2\n", "passed"),
])
def test_programs_are_stopped_and_classified(source, status):
    result = run_program(source, LIMITS)
    assert result.status == status, result.stderr
    assert result.passed == (status == "passed")
    assert result.wall_s < LIMITS.timeout_s + 2


def test_program_runs_in_its_own_process_folder_and_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNESCOPE_SECRET", "x")
    source = (f"import os\nassert os.getpid() != {os.getpid()}\n"
              f"assert os.getcwd() != {str(tmp_path)!r}\n"
              "assert 'PRUNESCOPE_SECRET' not in os.environ\n"
              "open('left_behind.txt', 'w').write('x')\n")
    assert run_program(source, LIMITS).passed
    assert not Path(tmp_path, "left_behind.txt").exists()


def test_network_namespace_when_available():
    """Below the guard: a connection made through libc directly (no audit event) finds no network."""
    if not network_namespace_prefix():
        pytest.skip("no network namespaces on this machine; the audit-hook guard alone applies")
    source = (
        "import ctypes, errno, struct\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.socket(2, 1, 0)\n"  # AF_INET, SOCK_STREAM
        "address = struct.pack('=H', 2) + struct.pack('!H', 80) + bytes([1, 1, 1, 1]) + bytes(8)\n"
        "assert libc.connect(fd, ctypes.create_string_buffer(address, 16), 16) == -1\n"
        "assert ctypes.get_errno() == errno.ENETUNREACH, ctypes.get_errno()\n"
    )
    result = run_program(source, LIMITS)
    assert result.passed, result.stderr


def test_scorer_carries_on_after_bad_programs():
    scorer = SandboxScorer(LIMITS)
    test = "assert add(2, 3) == 5\n"
    good = "def add(a, b):\n    return a + b\n"
    scores = [scorer([test], [[program]]) for program in (LOOP, ALLOCATE, SOCKET, good, "def add(a, b):\n    return a * b\n")]
    assert scores == [0.0, 0.0, 0.0, 1.0, 0.0]
    statuses = [scorer.outcomes[program_source(p, test)].status for p in (LOOP, ALLOCATE, SOCKET, good)]
    assert statuses == ["timeout", "memory", "blocked", "passed"]


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
