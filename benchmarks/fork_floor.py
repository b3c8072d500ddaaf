"""The fork mode's floor: what a forked child per test costs with nothing of the plugin's around.

Per iteration: pipe, fork; the child does one cumulative stage, writes a byte
and exits; the parent reads the byte and reaps it. The stages, from a bare
fork to the plugin's own namespace entry and one tmpfs, show what each step
adds.
"""

import os
import resource
import time
import traceback
from collections.abc import Callable

from pytest_mountns import _linux, _namespace
from pytest_mountns._linux import CloneFlag, MountFlag
from pytest_mountns._probe import Availability
from pytest_mountns._spec import TmpfsOptions


def stages(availability: Availability, target: str) -> dict[str, Callable[[], None]]:
    """What the forked child does before it answers, from nothing to the plugin's whole entry."""

    def unshare() -> None:
        if availability.user_namespace:
            uid, gid = os.getuid(), os.getgid()
            _linux.unshare(CloneFlag.NEWUSER)
            _linux.map_own_ids(uid, gid)
        _linux.unshare(CloneFlag.NEWNS)

    def private() -> None:
        unshare()
        _linux.mount(None, "/", None, MountFlag.REC | MountFlag.PRIVATE)

    def floor() -> None:
        _namespace.enter_private_namespace(availability.namespace, availability.user_namespace)
        _namespace.mount_tmpfs(target, TmpfsOptions(size="64m", mode=0o700))

    return {"fork": lambda: None, "unshare": unshare, "private": private, "floor": floor}


def time_forks(step: Callable[[], None], iterations: int) -> dict[str, float]:
    """Per iteration: fork to the child's answer, answer to reaped, and the minor faults."""
    answer_s = reap_s = 0.0
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(iterations):
        start = time.perf_counter()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                step()
                os.write(write_fd, b"y")
                os._exit(0)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
        os.close(write_fd)
        answered = os.read(read_fd, 1) == b"y"
        middle = time.perf_counter()
        os.waitpid(pid, 0)
        end = time.perf_counter()
        os.close(read_fd)
        if not answered:
            raise SystemExit("floor.py: the floor child failed")
        answer_s += middle - start
        reap_s += end - middle
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "total_ms": (answer_s + reap_s) / iterations * 1000,
        "reap_ms": reap_s / iterations * 1000,
        "self_minflt": (after[0].ru_minflt - before[0].ru_minflt) / iterations,
        "children_minflt": (after[1].ru_minflt - before[1].ru_minflt) / iterations,
    }


def measure(
    availability: Availability, target: str, iterations: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Each stage's figures per fork, after ``warmup`` forks of the whole floor."""
    steps = stages(availability, target)
    time_forks(steps["floor"], warmup)
    return {name: time_forks(step, iterations) for name, step in steps.items()}
