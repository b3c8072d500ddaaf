#!/usr/bin/env python3
"""Benchmark pytest-mountns: what isolating every test costs, and where the time goes.

Usage: ``python benchmarks/bench.py [--tests N] [--repeats R] [--plot out.png] [--quick]``

Plain pytest, ``--mountns-all`` in each mode and pytest-forked's ``--forked``
run a suite of trivial tests in interleaved rounds, beside the floors of what
each mode has to do; then, unless ``--quick``, the fork mode again with more
mounts and with more memory. README.md beside this file has the method and
what each figure means. This script drives; the parts:

- ``suite.py``, ``trivial_suite/``: the suite, copied to a scratch directory
- ``interpreter.py``, ``facts.py``: the Python that runs pytest, and what it says
- ``cases.py``, ``runner.py``, ``rounds.py``: what runs, how one run is timed, the rounds
- ``floor.py`` (``fork_floor.py``, ``inprocess_floor.py``), ``with_mounts.py``:
  scripts run inside a throwaway mount namespace (``throwaway_namespace.py``)
- ``summary.py``, ``report.py``, ``ratios.py``, ``machine.py``, ``plot.py``: the results
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cases
import interpreter
import machine
import suite
import summary
from failures import BenchError
from plot import plot
from report import format_report
from rounds import run_rounds, warm_up
from runner import Runner


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=500, help="number of tests (500)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument(
        "--modules", type=int, default=1, help="test files the tests are spread over (1)"
    )
    parser.add_argument("--plot", metavar="PNG", help="draw the results (needs matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="skip the scaling runs")
    parser.add_argument(
        "--mounts", type=int_list, default=[0, 20, 100, 1000], help="extra mounts (0,20,100,1000)"
    )
    parser.add_argument(
        "--memory", type=int_list, default=[0, 200, 1024], help="held MiB (0,200,1024)"
    )
    parser.add_argument(
        "--scaling-repeats", type=int, default=3, help="rounds of each scaling run (3)"
    )
    return parser.parse_args(argv)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    load_average = os.getloadavg()
    chosen = interpreter.choose()
    installed = interpreter.checkout()
    print(f"interpreter: {chosen.note}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="mountns-bench-") as scratch:
        suite.copy(Path(scratch), args.tests, args.modules)
        runner = Runner(chosen, Path(scratch), args.tests)
        skipped: dict[str, str] = {}
        jobs = cases.main_jobs(runner, skipped)
        warm_up(jobs, optional=("inprocess",), skipped=skipped)
        samples = run_rounds(jobs, args.repeats, "main")
        plain = samples.pop("plain")
        # What a variant's overhead is measured against: plain pytest, with -n where it has it.
        baselines = {False: plain, True: samples.pop("plain -n", [])}
        results: dict[str, Any] = {
            "date": datetime.date.today().isoformat(),
            "machine": machine.describe(),
            "interpreter": chosen.note,
            "checkout": installed,
            "tests": args.tests,
            "modules": args.modules,
            "rounds": args.repeats,
            "load_average_at_start": load_average,
            "plain": summary.summarize_plain(plain),
            "floor": summary.summarize_floor(samples.pop("floor")),
            "variants": {
                name: summary.summarize_variant(runs, baselines[name.endswith(" -n")], args.tests)
                for name, runs in samples.items()
            },
            "skipped": skipped,
            "writable": runner.writable_file_systems(),
        }
        if not args.quick:
            mount_jobs = cases.mount_jobs(runner, args.mounts)
            mounts = run_rounds(mount_jobs, args.scaling_repeats, "mounts")
            results["mount_scaling"] = summary.summarize_scaling(mounts, args.mounts, args.tests)
            memory_jobs = cases.memory_jobs(runner, args.memory)
            memory = run_rounds(memory_jobs, args.scaling_repeats, "memory")
            results["memory_scaling"] = summary.summarize_scaling(memory, args.memory, args.tests)
    results["load_average_at_end"] = os.getloadavg()
    results["took_s"] = time.perf_counter() - started
    return results


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        results = run_benchmark(args)
    except BenchError as error:
        print(f"bench.py: {error}", file=sys.stderr)
        return 1
    print(format_report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
