"""The floors: what isolating a test costs at the least, in each mode, with no test run.

Prints one JSON object: the plugin's mode here, the process's maximum RSS,
the fork floor's stages per fork and the in-process floor's per iteration
(or why it is unavailable). The process imports pytest and the plugin first,
so that its size, which a fork copies, is comparable to pytest's. It mounts,
so it runs only inside a throwaway mount namespace (it refuses otherwise)::

    unshare --mount --propagation slave -- python benchmarks/floor.py ITERATIONS

Without root, ``unshare --map-current-user ...``: the plugin then uses its
user-namespace mode, as it would for the caller.
"""

import argparse
import json
import os
import resource
import sys
import tempfile

import fork_floor
import inprocess_floor
import throwaway_namespace

import pytest_mountns.plugin  # noqa: F401  (with pytest: a process of pytest's size)
from pytest_mountns import _probe

WARMUP = 20
"""Iterations of the whole floor, not counted, before each floor's stages."""


def measure(iterations: int) -> dict[str, object]:
    """The fork floor, then the in-process floor, which leaves the process unfit to fork."""
    throwaway_namespace.require()
    availability = _probe.probe("auto")
    if not availability.available:
        sys.exit(f"floor.py: isolation unavailable: {availability.how}")
    target = tempfile.mkdtemp(prefix="mountns-bench-floor-")
    try:
        stages = fork_floor.measure(availability, target, iterations, WARMUP)
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        inprocess = inprocess_floor.measure(target, iterations, WARMUP)
    finally:
        os.rmdir(target)
    return {
        "mode": availability.how,
        "user_namespace": availability.user_namespace,
        "maxrss_kib": rss_kib,
        "stages": stages,
        "inprocess": inprocess,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("iterations", type=int, help="forks, and switches, per stage")
    print(json.dumps(measure(parser.parse_args().iterations)))


if __name__ == "__main__":
    main()
