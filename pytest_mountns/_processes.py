"""Finding and ending the processes a test left behind. Standard library only.

A subreaper adopts every orphan of its descendants, double-forked daemons
included, so "the processes a test left" are its subreaper's descendants.
Only pids are used, never ``waitpid(-1)``, which would steal the exit
statuses of the test's own subprocesses.
"""

from __future__ import annotations

import contextlib
import os
import signal

from . import _linux


def children(pid: int | str = "self") -> list[int]:
    """The live children of ``pid``, from every thread's ``/proc/.../children``."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(child) for child in f.read().split())
    return found


def descendants(pid: int | str = "self") -> list[int]:
    found: list[int] = []
    pending = children(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children(child))
    return found


def describe(pid: int) -> str:
    """``"1234 sleep 100"``, as ``ps`` would list it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"{pid} {command or '?'}"


def is_alive(pid: int) -> bool:
    """Not gone and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def mount_namespace(pid: int) -> int | None:
    """Its mount namespace, or None for a process already gone."""
    try:
        return _linux.mount_namespace_id(pid)
    except OSError:
        return None


def kill(pids: list[int]) -> list[str]:
    """SIGKILL each of ``pids``; return how the live ones were described."""
    killed = [describe(pid) for pid in pids if is_alive(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed


def reap(pids: list[int]) -> None:
    """Wait for each of ``pids`` that is a child of this process."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def end_descendants() -> list[str]:
    """In a subreaper: kill every descendant, reap the adopted, say who was alive.

    Killing a parent hands its children to us, so repeat until none is left.
    """
    killed: list[str] = []
    while found := descendants():
        killed += kill(found)
        reap([child for child in children() if child in found])
    return killed
