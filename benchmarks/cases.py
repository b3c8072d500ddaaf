"""What each table runs: the variants of the suite, the floor, and the scaling levels."""

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import throwaway_namespace
from runner import Case, Runner, Sample

WORKERS = 2
"""``-n`` of the all-cores-busy variants (xdist): as many workers as this machine's 2 cores."""
INPROCESS_ARGS = ("--mountns-all", "--mountns-mode=inprocess")
SESSION_ARGS = ("--mountns-all", "--mountns-userns=session")
"""Fork mode in one user namespace for the session: run only without root, where it differs."""
HOLD_ENV = "MOUNTNS_BENCH_HOLD_MIB"
"""The MiB the suite's session fixture holds (``trivial_suite/conftest.py``)."""
WITH_MOUNTS_SCRIPT = str(Path(__file__).resolve().parent / "with_mounts.py")


def main_jobs(runner: Runner, skipped: dict[str, str]) -> dict[str, Callable[[], Any]]:
    """The four variants and the floors, for the main table; ``skipped`` gets why one is not."""
    cases = [Case("plain"), Case("mountns", ("--mountns-all",))]
    if runner.interpreter.forked:
        cases.append(Case("forked", ("--forked",)))
    else:
        skipped["forked"] = "no pytest 8 venv"
    if runner.interpreter.forked and runner.interpreter.xdist:
        busy = ("-n", str(WORKERS))
        cases += [
            Case("plain -n", busy),
            Case("mountns -n", ("--mountns-all", *busy)),
            Case("forked -n", ("--forked", *busy)),
        ]
    else:
        skipped["mountns -n"] = skipped["forked -n"] = "no venv with pytest-xdist"
    cases += [  # every writable file system behind an overlay, in each mode
        Case("mountns hermetic", ("--mountns-all", "--mountns-hermetic=on")),
        Case("inprocess hermetic", (*INPROCESS_ARGS, "--mountns-hermetic=on")),
    ]
    if os.geteuid() != 0:  # fork mode without root: a user namespace per test, or one for all
        cases.append(Case("mountns session", (*SESSION_ARGS,)))
    reason = runner.why_not_in_process()
    if reason is None:
        cases.append(Case("inprocess", INPROCESS_ARGS))
    else:
        skipped["inprocess"] = reason
    jobs: dict[str, Callable[[], Any]] = {c.name: functools.partial(runner.run, c) for c in cases}
    jobs["floor"] = functools.partial(runner.floor, throwaway_namespace.prefix(for_mounting=False))
    return jobs


def mount_jobs(runner: Runner, counts: Sequence[int]) -> dict[str, Callable[[], Sample]]:
    """Plain and isolated, each in a throwaway namespace holding ``count`` extra tmpfs."""
    jobs: dict[str, Callable[[], Sample]] = {}
    for count in counts:
        directory = runner.suite / "mounts"
        helper = (runner.interpreter.python, WITH_MOUNTS_SCRIPT, str(count), str(directory), "--")
        prefix = (*throwaway_namespace.prefix(for_mounting=True), *helper)
        for name, args in (("plain", ()), ("mountns", ("--mountns-all",))):
            case = Case(f"{name}@{count}", args, prefix)
            jobs[case.name] = functools.partial(runner.run, case)
    return jobs


def memory_jobs(runner: Runner, sizes_mib: Sequence[int]) -> dict[str, Callable[[], Sample]]:
    """Plain and isolated, with the session fixture holding ``size`` MiB of touched memory."""
    jobs: dict[str, Callable[[], Sample]] = {}
    for size in sizes_mib:
        for name, args in (("plain", ()), ("mountns", ("--mountns-all",))):
            case = Case(f"{name}@{size}", args, env={HOLD_ENV: str(size)})
            jobs[case.name] = functools.partial(runner.run, case)
    return jobs
