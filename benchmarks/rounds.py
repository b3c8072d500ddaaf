"""Interleaved rounds: every job once per round, after one warm-up run of each.

The order rotates by one each round, so no job always follows the same one
or always runs first, while the machine drifts.
"""

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from failures import BenchError

T = TypeVar("T")


def warm_up(
    jobs: dict[str, Callable[[], Any]], optional: Sequence[str], skipped: dict[str, str]
) -> None:
    """One discarded run of each, so bytecode and page cache are warm for every round.

    An ``optional`` job that fails here is dropped, with the reason in ``skipped``:
    in-process isolation needs privileges that the fork runner does without.
    """
    for name, job in list(jobs.items()):
        try:
            job()
        except BenchError as error:
            if name not in optional:
                raise
            print(f"note: skipping {name}: {error}", file=sys.stderr)
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            errors = [line[1:].strip() for line in lines if line.startswith("E ")]
            skipped[name] = (errors or lines or ["its warm-up run failed"])[-1][:80]
            del jobs[name]


def run_rounds(jobs: dict[str, Callable[[], T]], rounds: int, label: str) -> dict[str, list[T]]:
    """Run every job once per round, the order rotating by one each round."""
    names = list(jobs)
    results: dict[str, list[T]] = {name: [] for name in names}
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        timings = []
        for name in order:
            start = time.perf_counter()
            results[name].append(jobs[name]())
            timings.append(f"{name} {time.perf_counter() - start:.1f}s")
        print(f"  {label} round {round_ + 1}/{rounds}: {', '.join(timings)}", file=sys.stderr)
    return results
