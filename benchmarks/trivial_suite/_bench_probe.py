"""Minor faults and CPU time of pytest and its reaped children, from session start to finish.

Loaded with ``-p _bench_probe``. Only pytest's own process can count what it
and its children spent, so the benchmark asks it, and it writes JSON to the
file named by ``MOUNTNS_BENCH_OUT``.
"""

import json
import os
import resource
import time

import pytest

OUT_ENV = "MOUNTNS_BENCH_OUT"

_start: dict[str, float] = {}


def _snapshot() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "session_s": time.perf_counter(),
        "self_minflt": own.ru_minflt,
        "self_cpu_s": own.ru_utime + own.ru_stime,
        "children_minflt": children.ru_minflt,
        "children_cpu_s": children.ru_utime + children.ru_stime,
    }


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _start.update(_snapshot())
    with open("/proc/self/mountinfo") as mountinfo:
        _start["mounts"] = sum(1 for _ in mountinfo)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller writes the file
    end = _snapshot()
    result = {key: end[key] - _start[key] for key in end}
    result["mounts"] = _start["mounts"]
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(os.environ[OUT_ENV], "w") as out:
        json.dump(result, out)
