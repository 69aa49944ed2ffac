"""Run untrusted generated code (HumanEval / MBPP programs) isolated by the kernel, and prove a pass.

Never in the pipeline's own process. Each program runs in a sandbox described in
:mod:`.sandbox_isolation` (by default bubblewrap namespaces plus a cgroup for the run), under the harness
of :mod:`.sandbox_runner`, which executes it in a fresh namespace and reports on a pipe the program's
outcome. The parent, here:

- hands the program over on a memfd (standard input) and reads only pipes it holds: the harness's
  report, the last bytes of stderr, bubblewrap's info; each read is bounded, and the folder the
  program writes to is never opened (it is a tmpfs that disappears with the sandbox);
- scores a pass only when the harness reported ``pass <token>`` with the run's random token (given to
  the harness on a pipe it reads after the program's last statement), the sandbox exited 0, and no
  limit was hit. Statuses come from that report, the exit status and the cgroup's counters, never from
  the program's stderr text;
- after the run kills every process left (the PID namespace dies with its first process; the cgroup or
  the session is emptied too) and removes the cgroup;
- turns any failure of its own into status ``error`` for that program, so that scoring goes on.

Statuses: passed | failed (an assert failed, or the program ended before its tests' end: ``exit()``,
``os._exit``, a signal) | timeout (wall clock or CPU seconds) | memory | blocked (the harness's guard) |
error (any other exception, or the sandbox itself failed).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import sandbox_isolation as isolation
from . import sandbox_process as process

log = logging.getLogger(__name__)
RUNNER_SOURCE = Path(__file__).with_name("sandbox_runner.py").read_text(encoding="utf-8")
STDERR_TAIL = 2000  # characters of stderr kept per program


class SandboxUnavailableError(RuntimeError):
    """The configured isolation level cannot be provided on this machine."""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0
    memory_mb: int = 1024  # all of the program's processes together (cgroup), and each one (RLIMIT_AS)
    cpu_s: int = 10
    file_mb: int = 16  # largest file the program may write
    processes: int = 32  # processes and threads of the run together
    disk_mb: int = 64  # size of the private /tmp (the working folder) and of /dev/shm
    isolation: str = "full"  # full | namespaces | none (see sandbox_isolation)

    def __post_init__(self):
        if self.isolation not in isolation.LEVELS:
            raise ValueError(f"tasks.sandbox.isolation: {self.isolation!r} is not one of {', '.join(isolation.LEVELS)}")


@dataclass(frozen=True)
class ExecutionResult:
    passed: bool
    status: str  # passed | failed | timeout | memory | blocked | error
    returncode: int | None
    stderr: str  # the last STDERR_TAIL characters
    wall_s: float
    detail: str = ""  # why, in words (the exception type, the limit hit, the sandbox's own failure)
    isolation: str = ""  # sandbox_isolation.describe() of the level used
    pid_namespace: int | None = None  # inode of the run's PID namespace (bubblewrap levels)
    limits_hit: tuple[str, ...] = ()  # cgroup limits reached: memory, processes
    survivors: int = 0  # processes of the run still alive after cleanup (0 unless the kernel refused)


def require_isolation(level: str) -> str:
    """The description of isolation ``level`` on this machine; raises SandboxUnavailableError naming what is missing."""
    missing = isolation.missing_for(level)
    if missing:
        below = isolation.LEVELS[isolation.LEVELS.index(level) + 1:]
        weaker = [name for name in below if not isolation.missing_for(name)]
        raise SandboxUnavailableError(
            f"tasks.sandbox.isolation: {level} is not available on this machine, so code tasks (humaneval, mbpp) "
            f"cannot run: {'; '.join(missing)}."
            + (f" To accept weaker isolation, set tasks.sandbox.isolation: {weaker[0]}." if weaker else ""))
    return isolation.describe(level)


def run_program(source: str, limits: SandboxLimits = SandboxLimits()) -> ExecutionResult:
    """Execute Python ``source`` as described in the module docstring; never raises for the program's sake."""
    started = time.perf_counter()
    try:
        label = require_isolation(limits.isolation)
        return _Run(source, limits, label).execute()
    except SandboxUnavailableError as error:
        return ExecutionResult(False, "error", None, "", time.perf_counter() - started, detail=str(error))
    except Exception as error:  # the sandbox's own failure: this program scores error, the task goes on
        log.warning("sandbox: run failed: %r", error)
        return ExecutionResult(False, "error", None, "", time.perf_counter() - started,
                               detail=f"sandbox failure: {error!r}", isolation=limits.isolation)


class _Run:
    def __init__(self, source: str, limits: SandboxLimits, label: str):
        self.source, self.limits, self.label = source, limits, label
        self.token = secrets.token_hex(16)
        self.fds: list[int] = []  # every descriptor opened here, closed at the end
        self.cgroup: isolation.RunCgroup | None = None
        self.folder: str | None = None

    def execute(self) -> ExecutionResult:
        try:
            return self._execute()
        finally:
            for fd in self.fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self.cgroup is not None:
                self.cgroup.remove()  # a no-op after a normal run; after a failure it kills and removes
            if self.folder is not None:
                process.remove_tree(self.folder)

    def _pipe(self) -> tuple[int, int]:
        read_end, write_end = os.pipe()
        self.fds += [read_end, write_end]
        return read_end, write_end

    def _execute(self) -> ExecutionResult:
        limits, level = self.limits, self.limits.isolation
        program = os.memfd_create("program", os.MFD_CLOEXEC)
        self.fds.append(program)
        os.write(program, self.source.encode("utf-8", "replace"))
        os.lseek(program, 0, os.SEEK_SET)
        token_read, token_write = self._pipe()
        os.write(token_write, self.token.encode("ascii"))
        os.close(token_write)
        self.fds.remove(token_write)
        report_read, report_write = self._pipe()
        stderr_read, stderr_write = self._pipe()
        info_read, info_write = self._pipe() if level != "none" else (None, None)

        runner = [isolation.sandbox_python(), "-I", "-B", "-c", RUNNER_SOURCE, str(token_read), str(report_write),
                  str(limits.memory_mb), str(int(limits.cpu_s)), str(limits.file_mb), str(limits.processes), "256"]
        inner_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        if level == "none":
            self.folder = tempfile.mkdtemp(prefix="prunescope-sandbox-")
            command, cwd = runner, self.folder
            env = {**inner_env, "HOME": self.folder, "TMPDIR": self.folder}
        else:
            bwrap, _ = isolation.bubblewrap()
            inner_env.update(HOME=isolation.WORKDIR, TMPDIR=isolation.WORKDIR)
            command = isolation.bwrap_arguments(bwrap, limits.disk_mb * 1024 * 1024, info_write, inner_env) + runner
            cwd, env = "/", {"PATH": "/usr/bin:/bin"}
        if level == "full":
            self.cgroup = isolation.RunCgroup(isolation.cgroup_parents()[0], limits.memory_mb, limits.processes)
            # The launcher joins the cgroup(s) before it becomes bubblewrap: every process of the run is inside.
            join = 'for f in "$@"; do case $f in --) shift; exec "$@";; esac; echo $$ > "$f" || exit 125; shift; done'
            command = ["/bin/sh", "-c", join, "sh", *self.cgroup.join_files, "--", *command]
        passed_fds = tuple(fd for fd in (token_read, report_write, info_write) if fd is not None)

        started = time.perf_counter()
        child = subprocess.Popen(command, stdin=program, stdout=subprocess.DEVNULL, stderr=stderr_write, cwd=cwd,
                                 env=env, pass_fds=passed_fds, start_new_session=True)
        info = None
        try:
            for fd in (token_read, report_write, stderr_write, info_write):
                if fd is not None:
                    os.close(fd)
                    self.fds.remove(fd)
            captures = {report_read: process.Capture(512, 4096), stderr_read: process.Capture(0, 4 * STDERR_TAIL)}
            if info_read is not None:
                captures[info_read] = process.Capture(4096, 0)
            info = captures.get(info_read)
            timed_out = process.drain(child, captures, started + limits.timeout_s,
                                      lambda: self._kill_everything(child, info, ended=True))
        finally:
            self._kill_everything(child, info)
            returncode = process.reap(child)
        wall = time.perf_counter() - started
        hits = tuple(self.cgroup.limits_hit()) if self.cgroup else ()
        survivors = self.cgroup.remove() if self.cgroup else 0
        init_pid, namespace = _bwrap_info(captures[info_read]) if info_read is not None else (None, None)
        if init_pid is not None and not process.wait_namespace_gone(init_pid, namespace):
            survivors += 1
        status, detail = _status(captures[report_read].lines(), self.token, returncode, timed_out, hits, limits)
        return ExecutionResult(status == "passed", status, returncode, captures[stderr_read].text()[-STDERR_TAIL:],
                               wall, detail=detail, isolation=self.label, pid_namespace=namespace, limits_hit=hits,
                               survivors=survivors)

    def _kill_everything(self, child: subprocess.Popen, info: process.Capture | None, ended: bool = False) -> None:
        """SIGKILL the run's processes: first the namespace's first process (the namespace dies with it, and
        bubblewrap reaps it rather than leaving it to the host's init), then bubblewrap's session and
        whatever is left in the cgroup. ``child`` is not reaped here, so its group id stays ours."""
        init_pid, namespace = _bwrap_info(info) if info is not None else (None, None)
        if init_pid is not None and not ended and child.returncode is None:
            process.kill_namespace(init_pid, namespace)
            process.wait_unreaped(child.pid, 1.0)
        process.kill_session(child)
        if self.cgroup is not None:
            self.cgroup.kill_all()


def _status(report: list[str], token: str, returncode: int | None, timed_out: bool, hits: tuple[str, ...],
            limits: SandboxLimits) -> tuple[str, str]:
    """(status, detail) from the harness's report, the exit status and the cgroup's counters."""
    final = next((line for line in reversed(report) if line.startswith(("blocked ", "exception "))), "")
    signal_number = -returncode if returncode is not None and returncode < 0 else (
        returncode - 128 if returncode is not None and returncode > 128 and limits.isolation != "none" else None)
    if timed_out:
        return "timeout", f"still running after {limits.timeout_s:g} s (wall clock)"
    if "memory" in hits:
        return "memory", f"over {limits.memory_mb} MiB for all of its processes together (killed by the kernel)"
    if f"pass {token}" in report and returncode == 0:
        return "passed", ""
    if final.startswith("blocked "):
        return "blocked", final
    if final.startswith("exception memory"):
        return "memory", final.split()[-1]
    if signal_number in (signal.SIGXCPU, signal.SIGKILL) and not final:  # RLIMIT_CPU
        return "timeout", f"over {limits.cpu_s} CPU seconds"
    if final.startswith("exception failed"):
        return "failed", final.split()[-1]
    if final.startswith("exception exit"):
        return "failed", f"{final.split()[-1]} before the end of its tests"
    if final.startswith("exception error"):
        return "error", final.split()[-1]
    if "start" not in report:
        return "error", f"the sandbox did not start (exit status {returncode})"
    return "failed", f"ended before the end of its tests without a report (exit status {returncode})"


def _bwrap_info(capture: process.Capture) -> tuple[int | None, int | None]:
    """(host pid of the namespace's first process, PID namespace inode) from bubblewrap's --info-fd JSON."""
    try:
        info = json.loads(capture.head.decode("utf-8"))
        return int(info["child-pid"]), int(info["pid-namespace"])
    except (ValueError, KeyError, TypeError):
        return None, None
