#!/usr/bin/env python3
"""Benchmark pytest-mountns: what isolating every test costs, and where the time goes.

Usage: ``python benchmarks/bench.py [--tests N] [--repeats R] [--plot out.png] [--quick]``

Method
------
1. Suite. N trivial tests (default 500) are generated in a temporary directory,
   with a ``pytest.ini`` (so no other configuration applies), a conftest whose
   session-scoped autouse fixture can hold touched memory, and a small plugin,
   ``-p _bench_probe``, that records between session start and finish the
   pytest process's own minor page faults and CPU time and those of the
   children it reaped (``getrusage`` ``RUSAGE_SELF`` and ``RUSAGE_CHILDREN``).
2. Variants. ``python -m pytest -q -p no:cacheprovider`` plain, with
   ``--mountns-all`` (a forked child per test), with pytest-forked's
   ``--forked``, and "inprocess", ``--mountns-all --mountns-mode=inprocess``
   (pytest's own thread enters a namespace per test and comes back). The last
   is skipped, with the reason, where the plugin would fork instead (without
   CAP_SYS_ADMIN) or its warm-up run fails. pytest-forked fails
   every test on pytest 9, so all of them run from one cached venv,
   ~/.cache/pytest-mountns-bench/, with ``pytest>=8.4,<9``, pytest-forked and
   this checkout installed: same interpreter, same pytest. Where the venv
   cannot be built, the forked column is skipped and this interpreter is used.
   After one warm-up run of each variant, R rounds (default 5) run every
   variant once, in an order that rotates from round to round. Wall time is
   the whole pytest process. A variant's overhead per test is
   (variant - plain) / N within a round; medians over the rounds are reported.
3. Floor. N times, in a process that has imported pytest and the plugin:
   pipe, fork; the child unshares its mount namespace, makes / private and
   mounts one tmpfs with the plugin's own functions, writes a byte and exits;
   the parent reads the byte and reaps the child. No test runs. Cumulative
   stages (fork only, + unshare, + private /, + tmpfs) show what each step
   costs. The worker runs inside ``unshare --mount --propagation slave``: a
   throwaway namespace whose mounts cannot reach the machine's, which keeps
   the propagation links of a shared ``/`` (making ``/`` private costs about
   what it costs under pytest). It runs once per round, in the rotation.
   In-process floor, in the same worker after the forks: a second, idle
   thread is started (pytest may be multithreaded); the main thread unshares
   ``CLONE_FS`` once, then N times: unshare ``CLONE_NEWNS``, / private, one
   tmpfs on a directory, a byte written to a file in it, ``setns`` back to the
   namespace held by an fd (dropping the one left, there and then) and
   ``fchdir`` to the cwd held the same way. Bare syscalls: the plugin's own
   switch also restores root and umask, and leaves the namespace's teardown
   to a thread of its own. Stages: enter and back only, + tmpfs, + the byte
   (the floor). The budgets of the in-process mode: overhead at most 0.1
   of pytest-forked's and at most 2 in-process floors, both from the same run.
4. Faults. Parent faults per test = (isolated - plain) own minor faults / N;
   child faults per test = the reaped children's minor faults / N. CPU time
   is split the same way.
5. Scaling (skipped with --quick). Plain and ``--mountns-all`` again,
   interleaved the same way: inside a throwaway mount namespace holding 0, 20,
   100 and 1000 extra tmpfs mounts (a mount namespace is copied, and torn down,
   whole), and with the session fixture holding 0, 200 and 1024 MiB of touched
   memory (fork copies the page tables of everything pytest holds).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "pytest-mountns-bench"
VENV_REQUIREMENTS = ("pytest>=8.4,<9", "pytest-forked", "pytest-xdist")
WORKERS = 2
"""``-n`` of the all-cores-busy variants (xdist): as many workers as this machine's 2 cores."""
OUT_ENV = "MOUNTNS_BENCH_OUT"
HOLD_ENV = "MOUNTNS_BENCH_HOLD_MIB"
BUDGET_VS_FORKED = 0.75
STRETCH_VS_FLOOR = 2.0
INPROCESS_BUDGET_VS_FORKED = 0.1
INPROCESS_BUDGET_VS_FLOOR = 2.0
INPROCESS_ARGS = ("--mountns-all", "--mountns-mode=inprocess")
HERMETIC_BUDGET_MS = {"mountns": 1.0, "inprocess": 0.5}
"""What --mountns-hermetic may add per test (issue 18), on this machine's mount table."""
SESSION_ARGS = ("--mountns-all", "--mountns-userns=session")
"""Fork mode in one user namespace for the session: run only without root, where it differs."""
FLOOR_WARMUP = 20
MIB = 1024 * 1024

T = TypeVar("T")

# --- the generated suite -----------------------------------------------------------------

PYTEST_INI = "[pytest]\n"

CONFTEST = f'''\
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _held_memory():
    """Hold {HOLD_ENV} MiB of memory, every 4 KiB page touched, for the whole session."""
    size = int(os.environ.get("{HOLD_ENV}", "0")) * {MIB}
    held = bytearray(size)
    held[::4096] = b"\\x01" * len(range(0, size, 4096))
    yield held
'''

PROBE_PLUGIN = f'''\
"""Minor faults and CPU time of pytest and its reaped children, from session start to finish."""
import json
import os
import resource
import time

import pytest

_start = {{}}


def _snapshot():
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {{
        "session_s": time.perf_counter(),
        "self_minflt": own.ru_minflt,
        "self_cpu_s": own.ru_utime + own.ru_stime,
        "children_minflt": children.ru_minflt,
        "children_cpu_s": children.ru_utime + children.ru_stime,
    }}


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    _start.update(_snapshot())
    with open("/proc/self/mountinfo") as mountinfo:
        _start["mounts"] = sum(1 for _ in mountinfo)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller writes the file
    end = _snapshot()
    result = {{key: end[key] - _start[key] for key in end}}
    result["mounts"] = _start["mounts"]
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(os.environ["{OUT_ENV}"], "w") as out:
        json.dump(result, out)
'''


def write_suite(root: Path, tests: int, modules: int) -> None:
    """The N trivial tests spread over ``modules`` files, their conftest and ini file, the probe.

    Many modules, because a spare child is forked only for a test of the same
    module: one file of N tests would flatter it.
    """
    (root / "pytest.ini").write_text(PYTEST_INI)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "_bench_probe.py").write_text(PROBE_PLUGIN)
    for module in range(modules):
        numbers = range(module, tests, modules)
        body = "".join(f"def test_{i}():\n    pass\n\n\n" for i in numbers)
        name = "test_trivial.py" if modules == 1 else f"test_trivial_{module:03d}.py"
        (root / name).write_text(body.rstrip() + "\n")


# --- the interpreter: a cached venv with pytest 8 and pytest-forked -----------------------


@dataclass(frozen=True)
class Interpreter:
    python: str
    pythonpath: tuple[str, ...]
    """Put ahead of the suite's directory on PYTHONPATH."""
    plugin_args: tuple[str, ...]
    """``-p pytest_mountns.plugin`` where the plugin is not installed, so not auto-loaded."""
    forked: bool
    note: str
    xdist: bool
    env: dict[str, str] = field(default_factory=dict)


def source_digest() -> str:
    """A hash of what gets installed, so the venv's copy is replaced when the checkout changes."""
    digest = hashlib.sha256()
    files = [REPO / "pyproject.toml", *sorted((REPO / "pytest_mountns").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def pip(python: Path, *args: str) -> None:
    """Run pip quietly; on failure raise with the end of its output."""
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{tail(done.stdout + done.stderr)}")


def install_checkout(python: Path) -> None:
    """Install a copy of the checkout: pip builds in the source tree, and this one is shared."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "benchmarks"
    )
    with tempfile.TemporaryDirectory(prefix="mountns-bench-src-") as scratch:
        copy = Path(scratch) / "src"
        shutil.copytree(REPO, copy, ignore=ignore)
        pip(python, "--no-deps", "--force-reinstall", str(copy))


def build_venv() -> Path:
    """The venv's python: created once, its copy of the plugin refreshed when the source changed."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = CACHE / f"venv-py{version}"
    python = venv / "bin" / "python"
    stamp = venv / "bench-stamp.json"
    wanted = {"requirements": list(VENV_REQUIREMENTS), "source": source_digest()}
    have = json.loads(stamp.read_text()) if stamp.exists() else {}
    if have.get("requirements") != wanted["requirements"] or not python.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip(python, *VENV_REQUIREMENTS)
        have = {"requirements": wanted["requirements"]}
    if have.get("source") != wanted["source"]:
        install_checkout(python)
    stamp.write_text(json.dumps(wanted))
    return python


def checkout() -> str:
    """The commit of the checkout, and whether what gets installed differs from it."""
    git = ["git", "-C", str(REPO)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "pytest_mountns", "pyproject.toml"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{commit} + uncommitted changes" if status else commit


def versions(python: str) -> str:
    """Python, pytest and pytest-forked versions as the given interpreter sees them."""
    code = (
        "import importlib.metadata as m, platform\n"
        "def v(name):\n"
        "    try: return m.version(name)\n"
        "    except m.PackageNotFoundError: return None\n"
        "print(f'Python {platform.python_version()}, pytest {v(\"pytest\")}', end='')\n"
        "print(f', pytest-forked {v(\"pytest-forked\")}' if v('pytest-forked') else '')\n"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def autoloads_plugin(pythonpath: Sequence[str]) -> bool:
    """Whether pytest, run from this interpreter with ``pythonpath``, loads the plugin itself.

    It does where an entry point names it: installed, or an egg-info in the checkout.
    """
    code = (
        "import importlib.metadata as m\n"
        "points = m.entry_points(group='pytest11')\n"
        "print(any(p.value == 'pytest_mountns.plugin' for p in points))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return done.stdout.strip() == "True"


def choose_interpreter() -> Interpreter:
    """The benchmark venv, or this interpreter with the checkout on its path and no forked."""
    try:
        python = str(build_venv())
        venv = Path(python).parents[1]
        return Interpreter(python, (), (), True, f"venv {venv}: {versions(python)}", True)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"note: the benchmark venv could not be built ({error});", file=sys.stderr)
        print("note: skipping pytest-forked, running this interpreter", file=sys.stderr)
    pythonpath = (str(REPO),)
    plugin_args = () if autoloads_plugin(pythonpath) else ("-p", "pytest_mountns.plugin")
    note = f"{sys.executable} with {REPO} on PYTHONPATH: {versions(sys.executable)}"
    # Importing the checkout itself: write no __pycache__ into it.
    no_bytecode = {"PYTHONDONTWRITEBYTECODE": "1"}
    return Interpreter(sys.executable, pythonpath, plugin_args, False, note, False, no_bytecode)


# --- running pytest ------------------------------------------------------------------------


@dataclass
class Case:
    """One way to run the suite: a variant, perhaps in a namespace or holding memory."""

    name: str
    variant_args: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    """Put before the pytest command (``unshare ... bench.py _mount K DIR --``)."""
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    wall_s: float
    probe: dict[str, float]
    tree_cpu_s: float
    """CPU of pytest and every process it started (xdist's workers, their children), reaped."""


class BenchError(RuntimeError):
    pass


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
        """Why the plugin would fork here despite ``--mountns-mode=inprocess``, or None.

        It falls back silently (the header, which ``-q`` hides, says so), and
        the variant would then measure the fork runner under another name.
        """
        code = "from pytest_mountns import _session\nprint(_session.why_in_process_forks() or '')\n"
        done = subprocess.run(
            [self.interpreter.python, "-c", code],
            cwd=self.suite,
            env=self.environment({}),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return tail(done.stderr, 1)
        return done.stdout.strip() or None

    def writable_file_systems(self) -> str:
        """What a hermetic test overlays here, counted from the plugin's own rule."""
        code = (
            "from pytest_mountns import _hermetic\n"
            "layout = _hermetic.Watched().layout()\n"
            "mine = [m.path for m in layout.root.walk() if m.overlaid]\n"
            "print(f'{len(mine)} writable file system(s) of {len(layout.points)} mounts: '"
            " + ', '.join(mine))\n"
        )
        done = subprocess.run(
            [self.interpreter.python, "-c", code],
            env=self.environment({}),
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() or tail(done.stderr, 1)

    def floor(self, prefix: Sequence[str]) -> dict[str, Any]:
        """The floor worker's measurements, from inside a throwaway mount namespace."""
        command = [*prefix, self.interpreter.python, str(Path(__file__).resolve()), "_floor"]
        env = self.environment({})
        done = subprocess.run([*command, str(self.tests)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"floor worker: exit {done.returncode}:\n{tail(done.stderr)}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result


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


def namespace_prefix(for_mounting: bool) -> tuple[str, ...]:
    """``unshare`` into a throwaway mount namespace that cannot send mounts to the machine's.

    Without root, a user namespace gives the right to mount: mapped to the
    caller's own uid (as the plugin does) for the floor, to root where this
    script's helper must mount before it runs pytest.
    """
    user: tuple[str, ...] = ()
    if os.geteuid() != 0:
        user = ("--map-root-user",) if for_mounting else ("--map-current-user",)
    return ("unshare", *user, "--mount", "--propagation", "slave", "--")


# --- inside the throwaway namespaces: the floor worker and the mount helper ----------------


def require_throwaway_namespace() -> None:
    """Refuse to mount anything in the machine's own mount namespace.

    Also compared with the parent's (bench.py, which ``unshare`` left behind):
    PID 1's namespace may be unreadable even to root.
    """
    own = os.stat("/proc/self/ns/mnt").st_ino
    for pid in (1, os.getppid()):
        try:
            other = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        except PermissionError:  # without root: then unshare made a user namespace, where we are
            continue
        if own == other:
            sys.exit("bench.py: refusing to run outside a throwaway mount namespace")


def floor_stages(availability: Any, target: str) -> dict[str, Callable[[], None]]:
    """What the forked child does before it answers, from nothing to the plugin's whole entry."""
    from pytest_mountns import _linux, _namespace
    from pytest_mountns._linux import CloneFlag, MountFlag
    from pytest_mountns._spec import TmpfsOptions

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
            raise SystemExit("bench.py: the floor child failed")
        answer_s += middle - start
        reap_s += end - middle
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "total_ms": (answer_s + reap_s) / iterations * 1000,
        "reap_ms": reap_s / iterations * 1000,
        "self_minflt": (after[0].ru_minflt - before[0].ru_minflt) / iterations,
        "children_minflt": (after[1].ru_minflt - before[1].ru_minflt) / iterations,
    }


def inprocess_stages(target: str) -> dict[str, Callable[[], None]]:
    """What the thread does inside its namespace, between enter and leave, up to the floor."""
    from pytest_mountns import _namespace
    from pytest_mountns._spec import TmpfsOptions

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


def time_inprocess(step: Callable[[], None], iterations: int) -> dict[str, float]:
    """Per iteration: the bare switch around ``step``; the time of each part and the faults.

    The issue's sequence and nothing of the plugin's: ``unshare(CLONE_FS)``
    once, then ``unshare(CLONE_NEWNS)``, ``/`` private, ``step``, ``setns``
    back to the namespace held by an fd (which drops the one left, there and
    then) and ``fchdir`` to the working directory held the same way.
    """
    from pytest_mountns import _linux
    from pytest_mountns._linux import CloneFlag, MountFlag

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


def inprocess_floor(target: str, iterations: int) -> dict[str, Any]:
    """The in-process floor's stages, or why this thread cannot go in and come back here.

    A second, idle thread runs first, so the process is multithreaded, as a
    pytest run may be. It never forks after that, so the fork floor runs first.
    Without CAP_SYS_ADMIN the process enters the session's user namespace
    first, as the plugin does for ``--mountns-mode=inprocess``.
    """
    from pytest_mountns import _session, _thread_namespace

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
    stages = inprocess_stages(target)
    time_inprocess(stages["floor"], FLOOR_WARMUP)
    results = {name: time_inprocess(step, iterations) for name, step in stages.items()}
    if os.stat("/proc/thread-self/ns/mnt").st_ino != own or os.listdir(target):
        sys.exit("bench.py: the in-process floor did not come back to where it started")
    return {"stages": results}


def floor_worker(iterations: int) -> None:
    """Print, as JSON, the cost per fork of each cumulative stage of the floor, then in-process."""
    import pytest  # noqa: F401  (the process should be of a size comparable to pytest's)

    import pytest_mountns.plugin  # noqa: F401
    from pytest_mountns import _probe

    require_throwaway_namespace()
    availability = _probe.probe("auto")
    if not availability.available:
        sys.exit(f"bench.py: isolation unavailable: {availability.how}")
    target = tempfile.mkdtemp(prefix="mountns-bench-floor-")
    try:
        stages = floor_stages(availability, target)
        time_forks(stages["floor"], FLOOR_WARMUP)
        results = {name: time_forks(step, iterations) for name, step in stages.items()}
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        inprocess = inprocess_floor(target, iterations)
    finally:
        os.rmdir(target)
    user_namespace = availability.user_namespace
    report = {"mode": availability.how, "user_namespace": user_namespace, "maxrss_kib": rss_kib}
    print(json.dumps({**report, "stages": results, "inprocess": inprocess}))


def mount_and_exec(count: int, directory: str, command: list[str]) -> None:
    """Mount ``count`` small tmpfs on subdirectories of ``directory``, then become ``command``."""
    from pytest_mountns import _linux
    from pytest_mountns._linux import MountFlag

    require_throwaway_namespace()
    for index in range(count):
        target = os.path.join(directory, f"m{index}")
        os.makedirs(target, exist_ok=True)
        _linux.mount("tmpfs", target, "tmpfs", MountFlag.NOSUID | MountFlag.NODEV, "size=4k")
    os.execvp(command[0], command)


# --- the experiments -----------------------------------------------------------------------


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
    jobs["floor"] = functools.partial(runner.floor, namespace_prefix(for_mounting=False))
    return jobs


def mount_jobs(runner: Runner, counts: Sequence[int]) -> dict[str, Callable[[], Sample]]:
    """Plain and isolated, each in a throwaway namespace holding ``count`` extra tmpfs."""
    jobs: dict[str, Callable[[], Sample]] = {}
    script = str(Path(__file__).resolve())
    for count in counts:
        directory = runner.suite / "mounts"
        helper = (runner.interpreter.python, script, "_mount", str(count), str(directory), "--")
        prefix = (*namespace_prefix(for_mounting=True), *helper)
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


def warm_up(
    jobs: dict[str, Callable[[], Any]],
    optional: Sequence[str] = (),
    skipped: dict[str, str] | None = None,
) -> None:
    """One discarded run of each, so bytecode and page cache are warm for every round.

    An ``optional`` job that fails here is dropped, with the reason in ``skipped``:
    in-process isolation needs privileges that the fork runner does without.
    """
    for name, job in list(jobs.items()):
        try:
            job()
        except BenchError as error:
            if name not in optional or skipped is None:
                raise
            print(f"note: skipping {name}: {error}", file=sys.stderr)
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            errors = [line[1:].strip() for line in lines if line.startswith("E ")]
            skipped[name] = (errors or lines or ["its warm-up run failed"])[-1][:80]
            del jobs[name]


# --- summaries -----------------------------------------------------------------------------


def per_test(values: Sequence[float], tests: int, scale: float = 1.0) -> float:
    return statistics.median(values) / tests * scale


def overheads_ms(variant: list[Sample], plain: list[Sample], tests: int) -> list[float]:
    """(variant - plain) / N in ms, pairing the runs of each round."""
    return [(v.wall_s - p.wall_s) / tests * 1000 for v, p in zip(variant, plain, strict=True)]


def summarize_variant(variant: list[Sample], plain: list[Sample], tests: int) -> dict[str, Any]:
    overhead = overheads_ms(variant, plain, tests)

    def paired(key: str) -> list[float]:
        return [v.probe[key] - p.probe[key] for v, p in zip(variant, plain, strict=True)]

    return {
        "wall_s": statistics.median(s.wall_s for s in variant),
        "overhead_ms": statistics.median(overhead),
        "overhead_range_ms": [min(overhead), max(overhead)],
        "parent_faults": per_test(paired("self_minflt"), tests),
        "child_faults": per_test([s.probe["children_minflt"] for s in variant], tests),
        "parent_cpu_ms": per_test(paired("self_cpu_s"), tests, 1000),
        "child_cpu_ms": per_test([s.probe["children_cpu_s"] for s in variant], tests, 1000),
        "total_cpu_ms": per_test(
            [v.tree_cpu_s - p.tree_cpu_s for v, p in zip(variant, plain, strict=True)], tests, 1000
        ),
        "maxrss_mib": statistics.median(s.probe["maxrss_kib"] for s in variant) / 1024,
        "mounts": variant[0].probe["mounts"],
    }


def median_stages(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Medians over the rounds of each stage's figures (``samples``: one ``stages`` per round)."""
    return {
        stage: {key: statistics.median(s[stage][key] for s in samples) for key in keys}
        for stage, keys in samples[0].items()
    }


def summarize_floor(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of each stage's per-fork, and per in-process, figures."""
    inprocess = [s["inprocess"] for s in samples]
    summary = {
        "mode": samples[0]["mode"],
        "user_namespace": samples[0]["user_namespace"],
        "maxrss_mib": statistics.median(s["maxrss_kib"] for s in samples) / 1024,
        "stages": median_stages([s["stages"] for s in samples]),
    }
    if all("stages" in s for s in inprocess):
        summary["inprocess"] = {"stages": median_stages([s["stages"] for s in inprocess])}
    else:
        reason = next(s["unavailable"] for s in inprocess if "stages" not in s)
        summary["inprocess"] = {"unavailable": reason}
    return summary


def summarize_scaling(samples: dict[str, list[Sample]], levels: Sequence[int], tests: int) -> dict:
    return {
        str(level): {
            "plain_wall_s": statistics.median(s.wall_s for s in samples[f"plain@{level}"]),
            **summarize_variant(samples[f"mountns@{level}"], samples[f"plain@{level}"], tests),
        }
        for level in levels
    }


# --- the report ----------------------------------------------------------------------------


def machine() -> str:
    """nproc, CPU model, RAM, kernel, distribution and transparent huge pages."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        ram_gib = int(meminfo.readline().split()[1]) / 1024 / 1024
    distro = platform.system()
    with open("/etc/os-release") as release:
        for line in release:
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    thp_mode = re.search(r"\[(\w+)\]", thp.read_text()) if thp.exists() else None
    return (
        f"{len(os.sched_getaffinity(0))} x {model}, {ram_gib:.0f} GiB RAM, "
        f"Linux {platform.release()}, {distro}, "
        f"transparent huge pages: {thp_mode.group(1) if thp_mode else 'n/a'}"
    )


def verdict(ratio: float, limit: float) -> str:
    return "met" if ratio <= limit else "NOT met"


def format_main(results: dict[str, Any]) -> list[str]:
    tests = results["tests"]
    header = (
        f"{'variant':<20}{'wall s':>8}{'max RSS MiB':>13}{'overhead ms/test':>22}"
        f"{'parent faults':>15}{'child faults':>14}{'parent CPU ms':>15}{'child CPU ms':>14}"
        f"{'total CPU ms':>14}"
    )
    modules = results.get("modules", 1)
    lines = [
        f"per test, medians of {results['rounds']} rounds of {tests} tests in {modules} "
        f"file(s); CPU and faults: more than plain's (-n {WORKERS}: plain -n {WORKERS}'s)",
        header,
    ]
    plain = results["plain"]
    lines.append(f"{'plain':<20}{plain['wall_s']:>8.2f}{plain['maxrss_mib']:>13.0f}{'-':>22}")
    busy = f" -n {WORKERS}"
    labels = (
        ("mountns", "--mountns-all"),
        ("mountns session", "--mountns-all session"),
        ("mountns hermetic", "--mountns-all hermetic"),
        ("forked", "--forked"),
        ("inprocess", "inprocess"),
        ("inprocess hermetic", "inprocess hermetic"),
        ("mountns -n", f"--mountns-all{busy}"),
        ("forked -n", f"--forked{busy}"),
    )
    for name, label in labels:
        row = results["variants"].get(name)
        if row is None and name == "mountns session" and name not in results.get("skipped", {}):
            continue  # run without root only
        if row is None:
            reason = results.get("skipped", {}).get(name, "not run")
            lines.append(f"{label:<20}    skipped ({reason})")
            continue
        low, high = row["overhead_range_ms"]
        spread = f"{row['overhead_ms']:.2f} ({low:.2f}-{high:.2f})"
        sides = (  # under xdist, pytest's process is a worker: the probe sees the controller
            f"{'-':>15}{'-':>14}{'-':>15}{'-':>14}"
            if name.endswith(" -n")
            else f"{row['parent_faults']:>15.0f}{row['child_faults']:>14.0f}"
            f"{row['parent_cpu_ms']:>15.2f}{row['child_cpu_ms']:>14.2f}"
        )
        lines.append(
            f"{label:<20}{row['wall_s']:>8.2f}{row['maxrss_mib']:>13.0f}{spread:>22}"
            f"{sides}{row['total_cpu_ms']:>14.2f}"
        )
    if "inprocess" in results["variants"]:
        lines.append(f"inprocess: {' '.join(INPROCESS_ARGS)}")
    if "mountns session" in results["variants"]:
        lines.append(f"--mountns-all session: {' '.join(SESSION_ARGS)}")
    return lines


def format_floor(floor: dict[str, Any]) -> list[str]:
    unshare = "NEWUSER, id maps, NEWNS" if floor["user_namespace"] else "CLONE_NEWNS"
    labels = {
        "fork": "fork + pipe + exit + waitpid",
        "unshare": f"  + unshare({unshare})",
        "private": "  + mount / MS_REC|MS_PRIVATE",
        "floor": "  + one tmpfs = the floor",
    }
    lines = [
        f"floor, per fork, in a process that imported pytest and the plugin "
        f"(max RSS {floor['maxrss_mib']:.0f} MiB; {floor['mode']})",
        f"{'stage':<38}{'ms':>8}{'of which exit+reap':>20}{'parent faults':>15}"
        f"{'child faults':>14}",
    ]
    for stage, label in labels.items():
        row = floor["stages"][stage]
        lines.append(
            f"{label:<38}{row['total_ms']:>8.3f}{row['reap_ms']:>20.3f}"
            f"{row['self_minflt']:>15.0f}{row['children_minflt']:>14.0f}"
        )
    return lines


def format_inprocess_floor(floor: dict[str, Any]) -> list[str]:
    title = "in-process floor, per iteration, same process, with a second, idle thread"
    inprocess = floor["inprocess"]
    if "stages" not in inprocess:
        return [f"{title}: unavailable ({inprocess['unavailable']})"]
    labels = {
        "enter": "unshare(NEWNS) + / private, then back",
        "tmpfs": "  + one tmpfs",
        "floor": "  + write a byte = the floor",
    }
    lines = [
        f"{title} (bare syscalls; back: setns, fchdir)",
        f"{'stage':<38}{'ms':>8}{'of which enter':>16}{'of which back':>15}{'faults':>14}",
    ]
    for stage, label in labels.items():
        row = inprocess["stages"][stage]
        lines.append(
            f"{label:<38}{row['total_ms']:>8.3f}{row['enter_ms']:>16.3f}"
            f"{row['leave_ms']:>15.3f}{row['self_minflt']:>14.0f}"
        )
    return lines


def format_ratios(results: dict[str, Any]) -> list[str]:
    mountns = results["variants"]["mountns"]["overhead_ms"]
    floor = results["floor"]["stages"]["floor"]["total_ms"]
    lines = []
    forked = results["variants"].get("forked")
    if forked is not None:
        ratio = mountns / forked["overhead_ms"]
        lines.append(
            f"mountns / forked overhead = {ratio:.2f}  "
            f"(budget <= {BUDGET_VS_FORKED}: {verdict(ratio, BUDGET_VS_FORKED)})"
        )
        mine, theirs = results["variants"]["mountns"], forked
        for key, what in (("parent_cpu_ms", "parent CPU"), ("total_cpu_ms", "total CPU")):
            ratio = mine[key] / theirs[key]
            lines.append(
                f"mountns / forked {what} = {ratio:.2f}  (goal <= 1: {verdict(ratio, 1.0)})"
            )
    busy, forked_busy = (results["variants"].get(f"{n} -n") for n in ("mountns", "forked"))
    if busy is not None and forked_busy is not None:
        ratio = busy["overhead_ms"] / forked_busy["overhead_ms"]
        lines.append(
            f"mountns / forked overhead, -n {WORKERS} = {ratio:.2f}  "
            f"(budget <= {BUDGET_VS_FORKED}: {verdict(ratio, BUDGET_VS_FORKED)})"
        )
    for name, base in (("mountns hermetic", "mountns"), ("inprocess hermetic", "inprocess")):
        covered, bare = results["variants"].get(name), results["variants"].get(base)
        if covered is not None and bare is not None:
            added = covered["overhead_ms"] - bare["overhead_ms"]
            lines.append(
                f"{name}: {added:+.2f} ms per test (budget <= {HERMETIC_BUDGET_MS[base]:g}), "
                f"{results.get('writable', '?')}"
            )
    session = results["variants"].get("mountns session")
    if session is not None:
        ratio = session["overhead_ms"] / mountns
        lines.append(f"mountns, one user namespace for the session / one per test = {ratio:.2f}")
    ratio = mountns / floor
    lines.append(
        f"mountns / floor overhead  = {ratio:.2f}  "
        f"(stretch goal <= {STRETCH_VS_FLOOR:g}: {verdict(ratio, STRETCH_VS_FLOOR)})"
    )
    inprocess = results["variants"].get("inprocess")
    if inprocess is None:
        return lines
    overhead = inprocess["overhead_ms"]
    if forked is not None:
        ratio = overhead / forked["overhead_ms"]
        lines.append(
            f"inprocess / forked overhead = {ratio:.2f}  (budget <= "
            f"{INPROCESS_BUDGET_VS_FORKED:g}: {verdict(ratio, INPROCESS_BUDGET_VS_FORKED)})"
        )
    inprocess_floor = results["floor"]["inprocess"]
    if "stages" in inprocess_floor:
        ratio = overhead / inprocess_floor["stages"]["floor"]["total_ms"]
        lines.append(
            f"inprocess / inprocess floor = {ratio:.2f}  (budget <= "
            f"{INPROCESS_BUDGET_VS_FLOOR:g}: {verdict(ratio, INPROCESS_BUDGET_VS_FLOOR)})"
        )
    else:
        lines.append("inprocess / inprocess floor: no floor measured (see above)")
    return lines


def format_scaling(title: str, level_label: str, rows: dict[str, Any]) -> list[str]:
    lines = [
        title,
        f"{level_label:<14}{'mounts':>8}{'max RSS MiB':>13}{'plain s':>9}{'mountns s':>11}"
        f"{'overhead ms/test':>22}{'parent faults':>15}{'child faults':>14}",
    ]
    for level, row in rows.items():
        low, high = row["overhead_range_ms"]
        spread = f"{row['overhead_ms']:.2f} ({low:.2f}-{high:.2f})"
        lines.append(
            f"{level:<14}{row['mounts']:>8}{row['maxrss_mib']:>13.0f}{row['plain_wall_s']:>9.2f}"
            f"{row['wall_s']:>11.2f}{spread:>22}{row['parent_faults']:>15.0f}"
            f"{row['child_faults']:>14.0f}"
        )
    return lines


def format_report(results: dict[str, Any]) -> str:
    lines = [
        f"pytest-mountns benchmark, {results['date']}",
        f"machine: {results['machine']}",
        f"interpreter: {results['interpreter']}",
        f"pytest-mountns: {REPO} at {results['checkout']}",
        "",
        *format_main(results),
        "",
        *format_floor(results["floor"]),
        "",
        *format_inprocess_floor(results["floor"]),
        "",
        *format_ratios(results),
    ]
    if "mount_scaling" in results:
        title = "scaling with the mounts in the namespace (both inside unshare --mount)"
        lines += ["", *format_scaling(title, "extra mounts", results["mount_scaling"])]
    if "memory_scaling" in results:
        title = "scaling with pytest's memory (session fixture holding touched memory)"
        lines += ["", *format_scaling(title, "held MiB", results["memory_scaling"])]
    start, end = (
        "/".join(f"{value:.2f}" for value in results[key])
        for key in ("load_average_at_start", "load_average_at_end")
    )
    lines += ["", f"took {results['took_s']:.0f} s; load average (1/5/15 min) {start} -> {end}"]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: str) -> None:
    """Three panels: overhead per test; against the mounts; against pytest's RSS."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not importable; no plot written to {path}", file=sys.stderr)
        return
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    names = ["floor"]
    heights = [results["floor"]["stages"]["floor"]["total_ms"]]
    colors = ["grey"]
    if "stages" in results["floor"]["inprocess"]:
        names.append("in-process\nfloor")
        heights.append(results["floor"]["inprocess"]["stages"]["floor"]["total_ms"])
        colors.append("lightgrey")
    errors = [[0.0] * len(names), [0.0] * len(names)]
    palette = {"mountns": "tab:blue", "forked": "tab:orange", "inprocess": "tab:green"}
    for name, row in results["variants"].items():
        names.append(name)
        heights.append(row["overhead_ms"])
        colors.append(palette.get(name, "tab:purple"))
        errors[0].append(row["overhead_ms"] - row["overhead_range_ms"][0])
        errors[1].append(row["overhead_range_ms"][1] - row["overhead_ms"])
    axes[0].bar(names, heights, yerr=errors, capsize=4, color=colors)
    axes[0].set(title=f"overhead per test ({results['tests']} tests)", ylabel="ms / test")
    for axis, key, label in (
        (axes[1], "mount_scaling", "extra mounts in the namespace"),
        (axes[2], "memory_scaling", "pytest max RSS (MiB)"),
    ):
        rows = results.get(key)
        if not rows:
            axis.set_axis_off()
            continue
        if key == "mount_scaling":
            xs = [float(level) for level in rows]
        else:
            xs = [row["maxrss_mib"] for row in rows.values()]
        ys = [row["overhead_ms"] for row in rows.values()]
        spread = [
            [y - row["overhead_range_ms"][0] for y, row in zip(ys, rows.values(), strict=True)],
            [row["overhead_range_ms"][1] - y for y, row in zip(ys, rows.values(), strict=True)],
        ]
        axis.errorbar(xs, ys, yerr=spread, fmt="o-", capsize=4, color="tab:blue")
        axis.set(title="--mountns-all overhead", xlabel=label, ylabel="ms / test")
        axis.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot written to {path}", file=sys.stderr)


# --- driver --------------------------------------------------------------------------------


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


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
    interpreter = choose_interpreter()
    installed = checkout()
    print(f"interpreter: {interpreter.note}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="mountns-bench-") as scratch:
        suite = Path(scratch)
        write_suite(suite, args.tests, args.modules)
        runner = Runner(interpreter, suite, args.tests)
        skipped: dict[str, str] = {}
        jobs = main_jobs(runner, skipped)
        warm_up(jobs, optional=("inprocess",), skipped=skipped)
        samples = run_rounds(jobs, args.repeats, "main")
        plain = samples.pop("plain")
        # What a variant's overhead is measured against: plain pytest, with -n where it has it.
        baselines = {False: plain, True: samples.pop("plain -n", [])}
        results: dict[str, Any] = {
            "date": datetime.date.today().isoformat(),
            "machine": machine(),
            "interpreter": interpreter.note,
            "checkout": installed,
            "tests": args.tests,
            "modules": args.modules,
            "rounds": args.repeats,
            "load_average_at_start": load_average,
            "plain": {
                "wall_s": statistics.median(s.wall_s for s in plain),
                "maxrss_mib": statistics.median(s.probe["maxrss_kib"] for s in plain) / 1024,
            },
            "floor": summarize_floor(samples.pop("floor")),
            "variants": {
                name: summarize_variant(runs, baselines[name.endswith(" -n")], args.tests)
                for name, runs in samples.items()
            },
            "skipped": skipped,
            "writable": runner.writable_file_systems(),
        }
        if not args.quick:
            mounts = run_rounds(mount_jobs(runner, args.mounts), args.scaling_repeats, "mounts")
            results["mount_scaling"] = summarize_scaling(mounts, args.mounts, args.tests)
            memory = run_rounds(memory_jobs(runner, args.memory), args.scaling_repeats, "memory")
            results["memory_scaling"] = summarize_scaling(memory, args.memory, args.tests)
    results["load_average_at_end"] = os.getloadavg()
    results["took_s"] = time.perf_counter() - started
    return results


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["_floor"]:
        floor_worker(int(argv[1]))
        return 0
    if argv[:1] == ["_mount"] and argv[3:4] == ["--"]:
        mount_and_exec(int(argv[1]), argv[2], list(argv[4:]))
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
