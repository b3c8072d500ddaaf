"""Helpers shared by the suite's modules."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def mount_table() -> list[str]:
    """The whole entries of this process's mount table, to compare before and after."""
    with open("/proc/self/mountinfo") as table:
        return sorted(table)


def run_in_shared_root(
    command: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a shell command in a throwaway mount namespace with / shared, as systemd has it."""
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount --make-rshared / && {command}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def run_while_the_host_mounts(
    project: Path, ready: Path, late: Path, mounted: Path, *pytest_args: str, prefix: str = ""
) -> subprocess.CompletedProcess[str]:
    """pytest in a throwaway namespace with ``/`` shared (the "host"), which mounts a
    tmpfs on ``late`` once a test creates ``ready``, then creates ``mounted``.

    ``prefix``: a shell command pytest runs under (``unshare --user ...``).
    """
    pytest_command = shlex.join(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
    )
    host_mounts_once_the_test_waits = (
        f"(for i in $(seq 6000); do [ -e {ready} ] && break; sleep 0.01; done; "
        f"mount -t tmpfs none {shlex.quote(str(late))} && touch {mounted}) &"
    )
    command = f"{host_mounts_once_the_test_waits} {prefix} {pytest_command}; wait"
    return run_in_shared_root(command, project)


def answer_of_a_child(body: Callable[[], str]) -> str:
    """``body``'s answer, from a forked child that ends after it: for what must not happen in
    the test's own process (a namespace entered, a call replaced). An exception is the answer,
    as ``Type: message``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        answer = "no answer"
        try:
            os.close(read_fd)
            answer = body()
        except BaseException as error:
            answer = f"{type(error).__name__}: {error}"
        finally:
            os.write(write_fd, answer.encode())
            os._exit(0)
    os.close(write_fd)
    with open(read_fd) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return answer


def outcomes(output: str) -> dict[str, int]:
    """The counts of pytest's closing line, exactly: ``{"passed": 2, "errors": 1}``."""
    return pytest.RunResult.parse_summary_nouns(output.splitlines())


def own_tmp(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A stand-in for ``/tmp`` inside the test's own directory: pytest's basetemp and
    ``tempfile.gettempdir()`` live there, so an inner test that mounts over "/tmp"
    (this directory) checks the same as over the real one, and writes nowhere else
    even if isolation were broken. Returns the directory and the ``--basetemp`` option."""
    tmp = pytester.mkdir("tmp")
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # for runs in this process
    return str(tmp), f"--basetemp={tmp / 'basetemp'}"


def become_subreaper() -> None:
    """Adopt every orphan below this process: what an inner run leaves comes here."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def ctrl_c_works() -> None:
    """A ``preexec_fn``: pytest under test takes Ctrl-C even where the suite was started
    with SIGINT ignored (``nohup``, a background job), which a child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def children(pid: int | str) -> list[int]:
    """The live children of ``pid``, from every thread's ``children`` file; none if gone."""
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(child) for child in f.read().split()]
    return found


def end_descendants(bound: float = 10) -> list[str]:
    """Freeze every process below this one, pass by pass until three passes in a row find
    none running (a process that keeps forking cannot outrun it), then kill and reap them
    all: what was running. Each is held by a pidfd, checked by its start time: pids
    come round again on a busy machine, and an unrelated process must never be hit."""

    def state(pid: int) -> tuple[bytes, bytes]:
        with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
            return fields[0], fields[19]
        return b"", b""

    frozen: dict[tuple[int, bytes], tuple[int, str]] = {}
    deadline = time.monotonic() + bound
    quiet = 0
    try:
        while time.monotonic() < deadline and quiet < 3:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            pending, fresh = children("self"), 0
            while pending:
                pid = pending.pop()
                pending += children(pid)
                running, started = state(pid)
                if running in (b"", b"Z") or (pid, started) in frozen:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    pidfd = os.pidfd_open(pid)
                    if state(pid)[1] != started:
                        os.close(pidfd)
                        continue
                    signal.pidfd_send_signal(pidfd, signal.SIGSTOP)
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        command = f.read().replace(b"\0", b" ").decode(errors="replace")
                    frozen[(pid, started)] = (pidfd, f"{pid} {command}")
                    fresh += 1
            quiet = 0 if fresh else quiet + 1
            time.sleep(0.002 * quiet)
        for pidfd, _ in frozen.values():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while time.monotonic() < deadline and children("self"):
                os.waitpid(-1, 0)
    finally:
        for pidfd, _ in frozen.values():
            os.close(pidfd)
    return [described for _, described in frozen.values()]
