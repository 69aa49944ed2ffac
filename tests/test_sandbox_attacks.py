"""Generated code tried as an adversarial model would, through run_program at the default isolation (full).

Every test asserts the outcome, that no process of the run is left (by the run's own PID namespace, and
no cgroup of this process remains), that nothing was written outside the sandbox, and that the
evaluator is healthy afterwards (a correct program still passes, a wrong one still fails).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prunescope.tasks import sandbox_isolation as isolation
from prunescope.tasks.sandbox import SandboxLimits, run_program

LIMITS = SandboxLimits(timeout_s=3, memory_mb=256, cpu_s=2, processes=16, disk_mb=8)
GOOD = "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n"
WRONG = "def add(a, b):\n    return a * b\n\nassert add(2, 3) == 5\n"
LIBC = "import ctypes, ctypes.util\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def require_full_isolation() -> None:
    """Skip where the machine cannot give the default isolation; in CI (CI set) that is a failure."""
    missing = isolation.missing_for("full")
    if missing and not os.environ.get("CI"):
        pytest.skip("; ".join(missing))
    assert not missing, missing


def processes_in_pid_namespace(inode: int) -> list[int]:
    """Host processes whose PID namespace is ``inode`` (the run's own namespace)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == inode:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def run_cgroups_left() -> list[Path]:
    parents = isolation.cgroup_parents()[0]
    dirs = parents.dirs.values() if parents else []
    return [path for parent in dirs for path in Path(parent).glob(f"prunescope-sandbox-{os.getpid()}-*")]


def assert_contained(result) -> None:
    assert result.pid_namespace is not None, result
    assert processes_in_pid_namespace(result.pid_namespace) == []
    assert result.survivors == 0
    assert run_cgroups_left() == []


def assert_healthy() -> None:
    good, wrong = run_program(GOOD, LIMITS), run_program(WRONG, LIMITS)
    assert (good.status, wrong.status) == ("passed", "failed"), (good, wrong)


@pytest.fixture
def outside(tmp_path):
    """Paths outside the sandbox that attacks try to write; none may exist after the run."""
    require_full_isolation()
    name = f"pwned-{secrets.token_hex(4)}"
    targets = [tmp_path / name, Path.cwd() / name, Path(sys.prefix) / name, Path(sys.base_prefix) / name,
               Path("/tmp") / name, Path("/dev/shm") / name]
    yield targets
    assert [path for path in targets if os.path.lexists(path)] == []
    assert_healthy()


def attempt_writes(targets) -> str:
    """Program text that tries to create every target and asserts that each attempt failed."""
    return textwrap.dedent(f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "w").write("x")
            except OSError:
                continue
            raise AssertionError("wrote " + path)
    """)


@pytest.mark.parametrize("trick, with_right_answer", [
    ("import sys\nsys.exit(0)\n", "failed"),  # the tests never ran: not a pass either
    ("exit()\n", "failed"),
    ("raise SystemExit\n", "failed"),
    ("import os\nos._exit(0)\n", "failed"),
    ("import atexit, os\natexit.register(os._exit, 0)\n", "passed"),
    ("import sys\nsys.excepthook = lambda *args: None\n", "passed"),
    ("import signal, os\nos.kill(os.getpid(), signal.SIGTERM)\n", "passed"),  # the first process ignores it
    ("if __name__ == '__main__':\n    raise SystemExit(0)\n", "passed"),  # as in code_eval: the block does not run
    ("import threading, os, time\nthreading.Thread(target=lambda: (time.sleep(0.5), os._exit(0))).start()\n", "passed"),
])
def test_a_wrong_answer_never_passes(trick, with_right_answer, outside):
    """The trick comes with the completion, before the tests (here failing ones)."""
    result = run_program(trick + WRONG, LIMITS)
    assert result.status == "failed", result
    assert_contained(result)
    assert run_program(trick + GOOD, LIMITS).status == with_right_answer


@pytest.mark.parametrize("source, status", [
    ("_BLOCK = ()\nimport socket\nsocket.socket()\n", "blocked"),  # the old guard's globals are not the program's
    ("print(_source)\n", "error"),  # neither are the tests' text nor the harness's names
    ("import sys\nassert sys.modules['__main__'].__dict__.keys() <= {'__name__', '__doc__', '__package__', "
     "'__loader__', '__spec__', '__file__', '__builtins__', 'sys'}\n", "passed"),
    ("import gc\ngc.get_objects()\n", "blocked"),
    ("import sys\nsys.settrace(lambda *a: None)\n", "blocked"),
    ("import subprocess\nsubprocess.run(['true'])\n", "blocked"),
])
def test_the_harness_cannot_be_reached_or_switched_off(source, status, outside):
    result = run_program(source, LIMITS)
    assert result.status == status, result
    assert_contained(result)


def fork_exec_sleeper() -> str:
    """_posixsubprocess.fork_exec raises no audit event: a `sleep` in its own session, past the guard."""
    return textwrap.dedent("""
        import _posixsubprocess, os
        r, w = os.pipe()
        arguments = [[b"/usr/bin/sleep", b"30"], [b"/usr/bin/sleep"], True, (w,), None, None,
                     -1, -1, -1, -1, -1, -1, r, w, True, True, -1, None, None, None, -1, None]
        try:
            _posixsubprocess.fork_exec(*arguments)
        except TypeError:  # the signature changes between versions: allow_vfork at the end
            _posixsubprocess.fork_exec(*arguments, False)
    """)


SETSID_CHILD = LIBC + textwrap.dedent("""
    import time
    if libc.fork() == 0:
        libc.setsid()
        time.sleep(30)
""")


@pytest.mark.parametrize("spawn", [fork_exec_sleeper(), SETSID_CHILD])
def test_processes_do_not_outlive_the_run(spawn, outside):
    result = run_program(spawn + GOOD, LIMITS)
    assert result.status == "passed", result
    assert_contained(result)


def test_a_program_that_kills_its_parent_and_everything(outside):
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        # Through libc (no audit event): the kernel confines the signals to the run's own PID namespace.
        source = SETSID_CHILD + "import os\nlibc.kill(os.getppid(), 9)\nlibc.kill(-1, 9)\n"
        result = run_program(source + WRONG, LIMITS)
        assert result.status == "failed", result
        assert_contained(result)
        guarded = run_program("import os, signal\nos.kill(-1, signal.SIGKILL)\n" + GOOD, LIMITS)
        assert guarded.status == "blocked" and "os.kill" in guarded.detail, guarded
        assert_contained(guarded)
        assert bystander.poll() is None  # kill(-1) reached nothing outside the run
    finally:
        bystander.kill()
        bystander.wait()


def test_memory_is_bounded_over_all_processes(outside):
    """3 x 150 MiB, each process under its own 256 MiB address-space limit, exceeds 256 MiB together."""
    source = LIBC + textwrap.dedent("""
        import time
        for _ in range(2):
            if libc.fork() == 0:
                break
        block = b"x" * (150 * 1024 * 1024)
        time.sleep(1)
    """)
    result = run_program(source + GOOD, LIMITS)
    assert result.status == "memory", result
    assert "memory" in result.limits_hit
    assert_contained(result)


def test_a_fork_bomb_is_bounded_by_the_process_limit(outside):
    limits = SandboxLimits(**{**LIMITS.__dict__, "timeout_s": 1.5})
    result = run_program(LIBC + "while True:\n    libc.fork()\n", limits)
    assert result.status == "timeout", result
    assert "processes" in result.limits_hit
    assert_contained(result)


def test_no_root_no_host_proc_no_way_back(outside):
    allowed_top = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "sbin", "tmp", "usr",
                   *(path.split("/")[1] for path in isolation._interpreter_dirs())}  # the interpreter's own prefix
    private = (Path("/tmp"), Path("/dev/shm"))  # inside, these are the run's own tmpfs: writable, then gone
    source = LIBC + attempt_writes([path for path in outside if path.parent not in private]) + textwrap.dedent(f"""
        assert (os.getuid(), os.geteuid(), os.getgid()) == (65534, 65534, 65534)
        assert not os.path.exists("/proc") and not os.path.exists("/sys")
        for call in (lambda: os.setuid(0), lambda: os.chroot("/")):  # uid 0 is not even mapped: EINVAL
            try:
                call()
            except OSError:
                continue
            raise AssertionError("privileged call succeeded")
        assert os.getuid() == 65534
        CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
        assert libc.unshare(CLONE_NEWNET) == -1 and libc.unshare(CLONE_NEWUSER) == -1
        assert set(os.listdir("/")) <= {allowed_top!r}, os.listdir("/")
        assert not any(name.startswith("PRUNESCOPE") for name in os.environ)
    """)
    os.environ["PRUNESCOPE_SANDBOX_SECRET"] = "x"
    try:
        result = run_program(source, LIMITS)
    finally:
        del os.environ["PRUNESCOPE_SANDBOX_SECRET"]
    assert result.status == "passed", result.stderr
    assert_contained(result)


def test_no_network_no_dns_no_unix_socket_outside(tmp_path, outside):
    """Through libc directly (no audit event): the run has an empty network namespace and no host paths."""
    path_server = socket.socket(socket.AF_UNIX)
    path_server.bind(str(tmp_path / "evaluator.sock"))
    abstract_name = f"\0prunescope-test-{secrets.token_hex(4)}"
    abstract_server = socket.socket(socket.AF_UNIX)
    abstract_server.bind(abstract_name)
    for server in (path_server, abstract_server):
        server.listen(1)
        server.setblocking(False)
    source = LIBC + textwrap.dedent(f"""
        import errno, struct
        def connect(family, address):
            fd = libc.socket(family, 1, 0)
            assert fd >= 0, ctypes.get_errno()
            status = libc.connect(fd, ctypes.create_string_buffer(address, len(address)), len(address))
            return status, ctypes.get_errno()
        inet = struct.pack("=H", 2) + struct.pack("!H", 80) + bytes([1, 1, 1, 1]) + bytes(8)
        assert connect(2, inet) == (-1, errno.ENETUNREACH)
        for unix_path in ({str(tmp_path / "evaluator.sock")!r}.encode(), {abstract_name!r}.encode()):
            result, error = connect(1, struct.pack("=H", 1) + unix_path)
            assert result == -1 and error in (errno.ENOENT, errno.ECONNREFUSED), error
        answer = ctypes.c_void_p()
        assert libc.getaddrinfo(b"example.com", b"80", None, ctypes.byref(answer)) != 0
    """)
    result = run_program(source, LIMITS)
    assert result.status == "passed", result
    for server in (path_server, abstract_server):
        with pytest.raises(BlockingIOError):
            server.accept()
        server.close()
    assert_contained(result)


@pytest.mark.parametrize("where", ["/dev/shm", "/tmp"])
def test_filling_shared_memory_or_the_folder_stops_at_its_size(where, outside):
    fill = f"{where}/fill-{secrets.token_hex(4)}"
    source = textwrap.dedent(f"""
        import errno
        written = 0
        try:
            with open({fill!r}, "wb") as out:
                while True:
                    out.write(b"x" * 1048576)
                    out.flush()
                    written += 1
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        assert 0 < written <= {LIMITS.disk_mb}, written
    """)
    result = run_program(source, LIMITS)
    assert result.status == "passed", result
    assert_contained(result)
    assert not os.path.lexists(fill)  # the host's own {where} got nothing


@pytest.mark.parametrize("trap", [
    "import os\nos.mkfifo('stderr.txt')\nos.mkfifo('report')\n",
    "import os\nos.symlink('/dev/zero', 'stderr.txt')\nos.symlink('/dev/zero', 'program.py')\n",
    "import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n",
    "import os, sys\nsys.stderr.write('sandbox: blocked socket.connect\\n')\nsys.stderr.flush()\nos._exit(113)\n",
    # a forged report on every descriptor, without the run's token
    "import os\nfor fd in range(3, 64):\n    try:\n"
    "        os.write(fd, b'pass 0123456789abcdef0123456789abcdef\\nstart\\n')\n    except OSError:\n        pass\n",
])
def test_the_folder_and_streams_do_not_fool_the_evaluator(trap, outside):
    result = run_program(trap + WRONG, LIMITS)
    assert result.status == "failed", result
    assert result.wall_s < LIMITS.timeout_s
    assert_contained(result)


def test_floods_are_read_bounded(outside):
    source = "import os, sys\nfor _ in range(400):\n    sys.stderr.write('e' * 65536)\n" + GOOD
    result = run_program(source, LIMITS)
    assert result.status == "passed", result
    assert len(result.stderr) <= 2000
    assert_contained(result)
