"""Run untrusted generated code (HumanEval / MBPP programs) in a separate, limited process.

Never in the pipeline's own process. Each program runs:

- in a fresh child process (``python -I``: no user site, no PYTHON* variables) in its own session, so
  a timeout kills it and everything it started (``killpg``);
- in a new, empty temporary directory (its working directory and HOME/TMPDIR), removed afterwards,
  with a minimal environment (no tokens or paths of the parent leak in);
- under resource limits: address space (RLIMIT_AS), CPU seconds (RLIMIT_CPU), file size, no core
  dumps, and a wall-clock timeout;
- without network: inside ``unshare --net`` (an empty network namespace) when the kernel allows it,
  and always behind an audit hook installed before the program starts that ends the process at once
  (exit code 113) on any socket creation or connection, or on starting another process. An audit hook
  is not a security boundary on its own (ctypes could bypass it); the namespace and the limits are.

A program passes when it exits with status 0 within the limits; anything else is a failure with a
status saying why (``timeout``, ``memory``, ``blocked``, ``error``).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BLOCKED_EXIT = 113
# Audit events that open the network or start processes; the hook ends the interpreter on them
# (os._exit cannot be caught by the program, unlike an exception).
_GUARD = """
import os, resource, sys
MB = 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, ({memory_mb} * MB, {memory_mb} * MB))
resource.setrlimit(resource.RLIMIT_CPU, ({cpu_s}, {cpu_s} + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, ({file_mb} * MB, {file_mb} * MB))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_BLOCK = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
          "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
          "pty.spawn")
def _guard(event, args):
    if event in _BLOCK:
        os.write(2, ("sandbox: blocked " + event + "\\n").encode())
        os._exit({blocked_exit})
sys.addaudithook(_guard)
del _guard
with open("program.py", encoding="utf-8") as _f:
    _source = _f.read()
del _f
exec(compile(_source, "program.py", "exec"))
"""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0
    memory_mb: int = 1024
    cpu_s: int = 10
    file_mb: int = 16


@dataclass(frozen=True)
class ExecutionResult:
    passed: bool
    status: str  # passed | failed | timeout | memory | blocked | error
    returncode: int | None
    stderr: str  # the last 2000 characters
    wall_s: float


@functools.lru_cache(maxsize=1)
def network_namespace_prefix() -> tuple[str, ...]:
    """``unshare`` arguments that give the child an empty network namespace, or () where not allowed."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    for args in ((unshare, "--net"), (unshare, "--net", "--map-root-user")):
        try:
            if subprocess.run([*args, "true"], capture_output=True, timeout=10).returncode == 0:
                return args
        except (OSError, subprocess.TimeoutExpired):
            continue
    return ()


def run_program(source: str, limits: SandboxLimits = SandboxLimits()) -> ExecutionResult:
    """Execute Python ``source`` in the sandbox described in the module docstring."""
    with tempfile.TemporaryDirectory(prefix="prunescope-sandbox-") as folder:
        Path(folder, "program.py").write_text(source, encoding="utf-8")
        guard = _GUARD.format(memory_mb=int(limits.memory_mb), cpu_s=int(limits.cpu_s), file_mb=int(limits.file_mb),
                              blocked_exit=BLOCKED_EXIT)
        Path(folder, "guard.py").write_text(guard, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": folder, "TMPDIR": folder, "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        command = [*network_namespace_prefix(), sys.executable, "-I", "-B", "guard.py"]
        started = time.perf_counter()
        # stderr goes to a file: its size is capped by RLIMIT_FSIZE, a pipe would not be.
        with open(Path(folder, "stderr.txt"), "wb") as stderr_file:
            child = subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=stderr_file, start_new_session=True)
            try:
                child.wait(timeout=limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(child.pid)  # a timed-out program and anything it left in its session
                child.wait()
        wall = time.perf_counter() - started
        text = _tail(Path(folder, "stderr.txt"), 2000)
    return ExecutionResult(child.returncode == 0 and not timed_out,
                           _status(child.returncode, timed_out, text), child.returncode, text, wall)


def _tail(path: Path, n_chars: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4 * n_chars))
        return handle.read().decode("utf-8", "replace")[-n_chars:]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _status(returncode: int | None, timed_out: bool, stderr: str) -> str:
    if timed_out or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"
    if returncode == 0:
        return "passed"
    if returncode == BLOCKED_EXIT and "sandbox: blocked" in stderr:
        return "blocked"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory"
    if "AssertionError" in stderr:
        return "failed"
    return "error"
