"""What isolates a generated program from the machine: bubblewrap's namespaces and a per-run cgroup.

Levels (``tasks.sandbox.isolation``), each used exactly as named so that results are comparable:

- ``full`` (default): bubblewrap (new user, PID, network, mount, IPC and UTS namespaces; uid/gid 65534
  inside; no capabilities; no nested user namespaces; ``--die-with-parent``; a read-only view of the
  system directories and of the interpreter only, no ``/proc``, ``/sys``, home or project; a private,
  size-capped tmpfs as ``/tmp``, the working folder, and another as ``/dev/shm``), inside a cgroup made
  for the run that bounds the memory and the number of processes of all of its processes together.
- ``namespaces``: the same bubblewrap sandbox without a cgroup; memory is bounded per process
  (RLIMIT_AS) and processes per run by RLIMIT_NPROC, which the kernel counts per user namespace; it
  does not bind processes whose outer user is root, and the total memory is only bounded by
  processes x memory_mb.
- ``none``: no kernel isolation: a child process in its own session and a temporary folder, under the
  same rlimits and the harness's audit hook; it runs as the evaluator's user. Only for code you trust.

A cgroup is found as a child of the evaluator's own cgroup (so it nests inside any limit the evaluator
already runs under): cgroup v2 where the evaluator's cgroup offers the ``memory`` and ``pids``
controllers to its children (a delegated subtree), else cgroup v1 ``memory`` and ``pids`` hierarchies
that this user may write (root, or an administrator's delegation). A workstation user without either
can run ``isolation: namespaces`` or start the evaluator in a delegated cgroup v2 subtree.

bubblewrap 0.8.0 or later is needed (``--disable-userns``, ``--size``); an older one is reported as such.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LEVELS = ("full", "namespaces", "none")
SANDBOX_UID = 65534  # "nobody" inside the user namespace
WORKDIR = "/tmp"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
_run_numbers = itertools.count()


def sandbox_python() -> str:
    """The base interpreter (not a virtualenv's launcher: the sandbox sees no project or virtualenv)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _interpreter_dirs() -> list[str]:
    paths = {os.path.realpath(sys.base_prefix), os.path.dirname(sandbox_python())}
    libdir = sysconfig.get_config_var("LIBDIR")  # libpython, where the interpreter links it
    if libdir and os.path.isdir(libdir):
        paths.add(os.path.realpath(libdir))
    system = [d for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    return sorted(p for p in paths if not any(p == d or p.startswith(d + "/") for d in system))


def bwrap_arguments(bwrap: str, disk_bytes: int, info_fd: int | None, env: dict[str, str]) -> list[str]:
    """bubblewrap's command line up to (not including) the command it runs."""
    args = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
            # The harness is the namespace's first process: bubblewrap reaps it itself (with its own init in
            # between, that init is left to the host's init to reap, seconds later on some machines).
            "--as-pid-1",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox", "--cap-drop", "ALL"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _interpreter_dirs():
        args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        args += ["--ro-bind-try", path, path]
    args += ["--dev", "/dev", "--size", str(disk_bytes), "--tmpfs", WORKDIR, "--size", str(disk_bytes),
             "--tmpfs", "/dev/shm", "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKDIR, "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    return args + ["--"]


@functools.lru_cache(maxsize=1)
def bubblewrap() -> tuple[str | None, str]:
    """(bwrap path, its version) when bubblewrap can build the sandbox here, else (None, why not)."""
    bwrap = shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None)
    if bwrap is None:
        return None, ("bubblewrap is not installed (no `bwrap` on PATH; Debian/Ubuntu package 'bubblewrap', "
                      "which `make setup` installs when run as root)")
    try:
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        path = {"PATH": "/usr/bin:/bin"}
        probe = subprocess.run([*bwrap_arguments(bwrap, 1 << 20, None, path), sandbox_python(), "-I", "-c", "pass"],
                               capture_output=True, text=True, timeout=60, env=path)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"bubblewrap ({bwrap}) could not be run: {error}"
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        if "nknown option" in reason:  # --disable-userns and --size arrived in bubblewrap 0.8.0
            return None, f"{version or 'bubblewrap'} ({bwrap}) is too old: {reason}; the sandbox needs 0.8.0 or later"
        return None, (f"bubblewrap ({bwrap}) cannot build the sandbox here: {reason} (user namespaces must be "
                      "allowed: sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces, AppArmor)")
    return bwrap, version or "bubblewrap"


# ---------------------------------------------------------------------------------------------- cgroups

@dataclass(frozen=True)
class CgroupParents:
    """Where run cgroups are made: v2: {"unified": dir}; v1: {"memory": dir, "pids": dir}."""
    version: int
    dirs: dict[str, str]


class RunCgroup:
    """One run's cgroup(s): limits set on creation; ``join_files`` for the launcher; never raises on cleanup."""

    def __init__(self, parents: CgroupParents, memory_mb: int, processes: int):
        self.version = parents.version
        name = f"prunescope-sandbox-{os.getpid()}-{next(_run_numbers)}-{secrets.token_hex(3)}"
        self.dirs: list[Path] = []
        try:
            for parent in parents.dirs.values():
                (path := Path(parent, name)).mkdir()
                self.dirs.append(path)
            memory = memory_mb * 1024 * 1024
            if self.version == 2:
                (directory,) = self.dirs
                _write(directory / "memory.max", memory)
                _write(directory / "memory.swap.max", 0, optional=True)
                _write(directory / "pids.max", processes)
            else:
                memory_dir, pids_dir = (Path(parents.dirs[key], name) for key in ("memory", "pids"))
                _write(memory_dir / "memory.limit_in_bytes", memory)
                _write(memory_dir / "memory.memsw.limit_in_bytes", memory, optional=True)  # no swap either
                _write(pids_dir / "pids.max", processes)
        except BaseException:
            self.remove()
            raise

    @property
    def join_files(self) -> list[str]:
        return [str(directory / "cgroup.procs") for directory in self.dirs]

    def pids(self) -> set[int]:
        found = set()
        for directory in self.dirs:
            try:
                found |= {int(line) for line in (directory / "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                pass
        return found

    def kill_all(self) -> None:
        if self.version == 2 and self.dirs and _write(self.dirs[0] / "cgroup.kill", 1, optional=True):
            return
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def limits_hit(self) -> list[str]:
        """Which of the cgroup's limits the run reached: "memory" (an OOM kill), "processes"."""
        hit = []
        for directory in self.dirs:
            counters = {**_counters(directory / "memory.events"), **_counters(directory / "memory.oom_control"),
                        **{f"pids.{k}": v for k, v in _counters(directory / "pids.events").items()}}
            if counters.get("oom_kill", 0) > 0:
                hit.append("memory")
            if counters.get("pids.max", 0) > 0:
                hit.append("processes")
        return hit

    def remove(self, wait_s: float = 3.0) -> int:
        """Kill what is left, remove the cgroup(s); returns how many processes could not be killed (0)."""
        deadline = time.monotonic() + wait_s
        while self.pids() and time.monotonic() < deadline:
            self.kill_all()
            time.sleep(0.005)
        survivors = len(self.pids())
        for directory in reversed(self.dirs):
            for _ in range(100):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last processes are reaped
                    time.sleep(0.01)
            else:
                log.warning("sandbox: could not remove cgroup %s", directory)
        self.dirs = []
        return survivors


def _write(path: Path, value, optional: bool = False) -> bool:
    try:
        path.write_text(f"{value}\n")
        return True
    except OSError:
        if optional:
            return False
        raise


def _counters(path: Path) -> dict[str, int]:
    try:
        pairs = (line.split() for line in path.read_text().splitlines())
        return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}
    except OSError:
        return {}


def _own_cgroup_dirs() -> dict[str, str]:
    """controller ('unified' for v2) -> this process's cgroup directory, from /proc/self/{cgroup,mountinfo}."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in (controllers.split(",") if controllers else ["unified"]):
            own[controller] = path
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fields, tail = fields.split(), tail.split()
        root, mountpoint, fstype = fields[3], fields[4], tail[0]
        if fstype == "cgroup2":
            keys = ["unified"]
        else:  # cgroup v1: the controllers are among the super options
            keys = tail[2].split(",") if fstype == "cgroup" and len(tail) > 2 else []
        for key in keys:
            path = own.get(key)
            if path is not None and key not in found and (path == root or path.startswith(root.rstrip("/") + "/")):
                found[key] = os.path.join(mountpoint, path[len(root.rstrip("/")):].lstrip("/"))
    return found


@functools.lru_cache(maxsize=1)
def cgroup_parents() -> tuple[CgroupParents | None, str]:
    """Where this process can make run cgroups with memory and pids limits, else (None, why not)."""
    try:
        own = _own_cgroup_dirs()
    except (OSError, ValueError, IndexError) as error:
        return None, f"no cgroup information ({error})"
    candidates = []
    if "unified" in own:
        candidates.append(CgroupParents(2, {"unified": own["unified"]}))
    if "memory" in own and "pids" in own:
        candidates.append(CgroupParents(1, {"memory": own["memory"], "pids": own["pids"]}))
    problems = []
    for parents in candidates:
        try:
            probe = RunCgroup(parents, 64, 8)
        except OSError as error:
            where = ", ".join(parents.dirs.values())
            problems.append(f"cgroup v{parents.version} under {where}: {error.strerror or error}")
            continue
        probe.remove()
        return parents, ""
    return None, ("no cgroup for the program's memory and processes: " + ("; ".join(problems) or
                  "neither a cgroup v2 subtree with the memory and pids controllers nor cgroup v1 memory and pids "
                  "hierarchies") + " (root can write them; a workstation user needs a delegated cgroup v2 subtree)")


def missing_for(level: str) -> list[str]:
    """What this machine lacks for isolation ``level`` (empty: available)."""
    if level not in LEVELS:
        raise ValueError(f"tasks.sandbox.isolation: {level!r} is not one of {', '.join(LEVELS)}")
    missing = []
    if level in ("full", "namespaces") and bubblewrap()[0] is None:
        missing.append(bubblewrap()[1])
    if level == "full" and cgroup_parents()[0] is None:
        missing.append(cgroup_parents()[1])
    return missing


def describe(level: str) -> str:
    """The isolation a run at ``level`` gets on this machine, as recorded with every result."""
    if level == "none":
        return "none: child process, rlimits, audit hook"
    label = f"{level}: {bubblewrap()[1]} (user, pid, net, mount, ipc, uts namespaces; uid {SANDBOX_UID})"
    parents = cgroup_parents()[0] if level == "full" else None
    return label + (f" + cgroup v{parents.version} (memory, pids)" if parents else " + rlimits")
