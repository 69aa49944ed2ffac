"""The parent's side of one sandboxed run: bounded reads from the pipes it holds, and cleanup that cannot raise.

Nothing here opens a path inside the folder the program writes to: what the parent learns comes from
pipes it created (the harness's report, stderr, bubblewrap's info) and from the kernel (exit status,
``/proc/<pid>/ns/pid``, cgroup counters).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable

log = logging.getLogger(__name__)
READ_CHUNK = 65536
GRACE_S = 0.5  # after the program's process ended: time for its pipes to reach end-of-file


class Capture:
    """The first ``head`` and the last ``tail`` bytes of a stream, however long it gets."""

    def __init__(self, head: int, tail: int):
        self.head_size, self.tail_size, self.head, self.tail = head, tail, b"", b""

    def add(self, data: bytes) -> None:
        if len(self.head) < self.head_size:
            taken = self.head_size - len(self.head)
            self.head, data = self.head + data[:taken], data[taken:]
        if self.tail_size:
            self.tail = (self.tail + data)[-self.tail_size:]

    def lines(self) -> list[str]:
        return (self.head + b"\n" + self.tail).decode("ascii", "replace").splitlines()

    def text(self) -> str:
        return (self.head + self.tail).decode("utf-8", "replace")


def drain(child: subprocess.Popen, captures: dict[int, Capture], deadline: float, on_exit: Callable[[], None]) -> bool:
    """Read the pipes in ``captures`` until ``child`` has ended and they are closed; True if the deadline came first.

    ``on_exit`` runs once when the child ends, before it is reaped (kills what it left holding the pipes).
    """
    selector = selectors.DefaultSelector()
    pidfd = os.pidfd_open(child.pid)
    try:
        for fd in captures:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        selector.register(pidfd, selectors.EVENT_READ)
        open_pipes, ended_at = set(captures), None
        while open_pipes or ended_at is None:
            now = time.perf_counter()
            if ended_at is None and now >= deadline:
                return True
            if ended_at is not None and now >= ended_at + GRACE_S:
                return False  # a pipe still held open: its holder is killed by the caller's cleanup
            until = deadline if ended_at is None else ended_at + GRACE_S
            for key, _ in selector.select(max(0.0, until - now)):
                if key.fd == pidfd:
                    selector.unregister(pidfd)
                    ended_at = time.perf_counter()
                    on_exit()
                    continue
                try:
                    data = os.read(key.fd, READ_CHUNK)
                except BlockingIOError:
                    continue
                if data:
                    captures[key.fd].add(data)
                else:
                    selector.unregister(key.fd)
                    open_pipes.discard(key.fd)
        return False
    finally:
        selector.close()
        os.close(pidfd)


def kill_session(child: subprocess.Popen) -> None:
    """SIGKILL the session ``child`` leads; while the leader is unreaped its group id cannot be reused."""
    if child.returncode is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            pass


def kill_namespace(pid: int, namespace: int) -> None:
    """SIGKILL ``pid`` through a pidfd, only if it is still the first process of PID namespace ``namespace``."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if os.stat(f"/proc/{pid}/ns/pid").st_ino == namespace:  # checked after the pidfd pinned the process
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def wait_unreaped(pid: int, wait_s: float) -> bool:
    """Wait up to ``wait_s`` for child ``pid`` to end, leaving it unreaped; True if it ended."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def reap(child: subprocess.Popen) -> int | None:
    try:
        return child.wait(timeout=10)
    except subprocess.TimeoutExpired:  # uninterruptible sleep after SIGKILL: the kernel finishes it
        log.warning("sandbox: process %d did not end after SIGKILL", child.pid)
        return None


def wait_namespace_gone(pid: int, namespace: int, wait_s: float = 2.0) -> bool:
    """Wait until the PID namespace's first process ``pid`` is gone (the namespace dies with it, and the
    host's init reaps it once bubblewrap has left it behind); False if it is still there after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if os.stat(f"/proc/{pid}/ns/pid").st_ino != namespace:
                return True  # the number now belongs to another process
        except OSError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def remove_tree(top: str) -> None:
    """Delete a folder the program wrote (isolation none); never raises, follows no link, no recursion.

    Every operation is relative to a descriptor: each subfolder is first moved up to ``top`` itself, so
    depth costs nothing (no long paths, no PATH_MAX, no quadratic lookups) and at most two descriptors
    are open at a time.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        os.chmod(top, 0o700)  # the program may have taken the permissions away
        top_fd = os.open(top, flags)
    except OSError as error:
        log.warning("sandbox: could not remove %s: %s", top, error)
        return
    try:
        pending, moved = [None], 0  # None: top itself; else a folder's name directly under top
        while pending:
            name = pending.pop()
            try:
                fd = top_fd if name is None else os.open(name, flags, dir_fd=top_fd)
            except OSError:
                continue
            try:
                for entry in list(os.scandir(fd)):
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            moved += 1
                            os.chmod(entry.name, 0o700, dir_fd=fd)
                            os.rename(entry.name, f".removing-{moved}", src_dir_fd=fd, dst_dir_fd=top_fd)
                            pending.append(f".removing-{moved}")
                        else:
                            os.unlink(entry.name, dir_fd=fd)
                    except OSError:
                        continue
            except OSError:
                pass
            finally:
                if fd != top_fd:
                    os.close(fd)
            if name is not None:
                try:
                    os.rmdir(name, dir_fd=top_fd)
                except OSError:
                    pass
    finally:
        os.close(top_fd)
    try:
        os.rmdir(top)
    except OSError as error:
        log.warning("sandbox: could not remove %s: %s", top, error)
