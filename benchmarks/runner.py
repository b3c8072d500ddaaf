"""Runs the cases: pytest in a subprocess, timed whole, with the CPU of its process tree.

Each run must report every test passed: a skipped or failed run would
measure nothing, so it is an error, and stops the benchmark.
"""

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import facts
from failures import BenchError, tail
from interpreter import Interpreter

FLOOR_SCRIPT = str(Path(__file__).resolve().parent / "floor.py")
OUT_ENV = "MOUNTNS_BENCH_OUT"
"""Where the suite's probe writes its JSON (``trivial_suite/_bench_probe.py``)."""


@dataclass
class Case:
    """One way to run the suite: a variant, perhaps in a namespace or holding memory."""

    name: str
    variant_args: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    """Put before the pytest command (``unshare ... with_mounts.py K DIR --``)."""
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    wall_s: float
    probe: dict[str, float]
    tree_cpu_s: float
    """CPU of pytest and every process it started (xdist's workers, their children), reaped."""


@dataclass(frozen=True)
class Runner:
    """Runs cases of one suite with one interpreter."""

    interpreter: Interpreter
    suite: Path
    tests: int

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["PYTHONPATH"] = os.pathsep.join([*self.interpreter.pythonpath, str(self.suite)])
        return {**env, **self.interpreter.env, **extra}

    def command(self, case: Case) -> list[str]:
        pytest = [self.interpreter.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        plugins = [*self.interpreter.plugin_args, "-p", "_bench_probe"]
        return [*case.prefix, *pytest, *plugins, *case.variant_args, str(self.suite)]

    def run(self, case: Case) -> Sample:
        """Run pytest; a run where not every test passed is retried once, then is an error.

        Once, because an isolated test fails when anything else on the machine
        mounts or unmounts meanwhile (the plugin's leak check sees pytest's own
        mount table change): that is the machine, not the run.
        """
        try:
            return self.run_once(case)
        except BenchError as error:
            print(f"  note: retrying once, {error}", file=sys.stderr)
            return self.run_once(case)

    def run_once(self, case: Case) -> Sample:
        """Run pytest once; every test must pass, so an unisolated or skipped run is an error."""
        out = self.suite / "probe.json"
        out.unlink(missing_ok=True)
        env = self.environment({**case.env, OUT_ENV: str(out)})
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            self.command(case), cwd=self.suite, env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        tree_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        summary = re.compile(rf"(?m)^{self.tests} passed( in|,)")
        if done.returncode != 0 or not summary.search(done.stdout) or not out.exists():
            output = tail(done.stdout + done.stderr)
            raise BenchError(f"{case.name}: exit {done.returncode}, not all passed:\n{output}")
        return Sample(wall, json.loads(out.read_text()), tree_cpu)

    def why_not_in_process(self) -> str | None:
        """Why the plugin would fork here despite ``--mountns-mode=inprocess``, or None."""
        python = self.interpreter.python
        done = facts.ask(python, "why-in-process-forks", self.environment({}), self.suite)
        if done.returncode != 0:
            return tail(done.stderr, 1)
        return done.stdout.strip() or None

    def writable_file_systems(self) -> str:
        """What a hermetic test overlays here, counted from the plugin's own rule."""
        done = facts.ask(self.interpreter.python, "writable-file-systems", self.environment({}))
        return done.stdout.strip() or tail(done.stderr, 1)

    def floor(self, prefix: Sequence[str]) -> dict[str, Any]:
        """The floor script's measurements, from inside a throwaway mount namespace."""
        command = [*prefix, self.interpreter.python, FLOOR_SCRIPT, str(self.tests)]
        done = subprocess.run(command, env=self.environment({}), capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"floor worker: exit {done.returncode}:\n{tail(done.stderr)}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result
