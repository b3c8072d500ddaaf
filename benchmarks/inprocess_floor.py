"""The in-process mode's floor: one thread into a namespace of its own and back, bare syscalls.

The issue's sequence and nothing of the plugin's: ``unshare(CLONE_FS)``
once, then per iteration ``unshare(CLONE_NEWNS)``, ``/`` private, the stage,
``setns`` back to the namespace held by an fd (which drops the one left,
there and then) and ``fchdir`` to the working directory held the same way.
The plugin's own switch also restores root and umask, and leaves the
namespace's teardown to a thread of its own.
"""

import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pytest_mountns import _linux, _namespace, _session, _thread_namespace
from pytest_mountns._linux import CloneFlag, MountFlag
from pytest_mountns._spec import TmpfsOptions


def stages(target: str) -> dict[str, Callable[[], None]]:
    """What the thread does inside its namespace, between enter and leave, up to the floor."""
    path = os.path.join(target, "byte")

    def tmpfs() -> None:
        _namespace.mount_tmpfs(target, TmpfsOptions(size="64m", mode=0o700))

    def floor() -> None:
        tmpfs()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"y")
        finally:
            os.close(fd)

    return {"enter": lambda: None, "tmpfs": tmpfs, "floor": floor}


def time_switches(step: Callable[[], None], iterations: int) -> dict[str, float]:
    """Per iteration: the bare switch around ``step``; the time of each part and the faults."""
    namespace = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    enter_s = step_s = leave_s = 0.0
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        _linux.unshare(CloneFlag.FS)
        for _ in range(iterations):
            start = time.perf_counter()
            _linux.unshare(CloneFlag.NEWNS)
            _linux.mount(None, "/", None, MountFlag.REC | MountFlag.PRIVATE)
            entered = time.perf_counter()
            try:
                step()
            finally:
                stepped = time.perf_counter()
                _linux.setns(namespace, CloneFlag.NEWNS)
                os.fchdir(cwd)
            end = time.perf_counter()
            enter_s += entered - start
            step_s += stepped - entered
            leave_s += end - stepped
    finally:
        os.close(namespace)
        os.close(cwd)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "total_ms": (enter_s + step_s + leave_s) / iterations * 1000,
        "enter_ms": enter_s / iterations * 1000,
        "leave_ms": leave_s / iterations * 1000,
        "self_minflt": (after.ru_minflt - before.ru_minflt) / iterations,
    }


def measure(target: str, iterations: int, warmup: int) -> dict[str, Any]:
    """The stages' figures per iteration, or why this thread cannot go in and come back here.

    A second, idle thread starts first, so the process is multithreaded, as a
    pytest run may be: after this, the process must not fork. Without
    CAP_SYS_ADMIN the process enters the session's user namespace first, as
    the plugin does for ``--mountns-mode=inprocess``.
    """
    if _session.wanted("auto", "inprocess"):
        reason = _session.start(for_workers=False)
        if reason is not None:
            return {"unavailable": f"no user namespace for the session: {reason}"}
    idle = threading.Event()
    threading.Thread(target=idle.wait, name="bench-idle", daemon=True).start()
    reason = _thread_namespace.probe()
    if reason is not None:
        return {"unavailable": reason}
    own = os.stat("/proc/thread-self/ns/mnt").st_ino
    steps = stages(target)
    time_switches(steps["floor"], warmup)
    results = {name: time_switches(step, iterations) for name, step in steps.items()}
    if os.stat("/proc/thread-self/ns/mnt").st_ino != own or os.listdir(target):
        sys.exit("floor.py: the in-process floor did not come back to where it started")
    return {"stages": results}
