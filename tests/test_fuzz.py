"""The runner under generated hostile tests: a few hundred, in both modes.

Each test body is drawn from crashes, exits, closed descriptors, stopped
processes, bounded fork bombs, processes that keep forking, huge output on both
streams, mounts over ``/proc`` and ``/``, hangs, in setup, call or teardown.
Whatever they do: no INTERNALERROR, no hang past a bound, every test reported
exactly once, no process left behind, and the host's mount table unchanged.
The seed is fixed, so a failure reproduces; ``MOUNTNS_FUZZ_SEED`` picks another.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests._helpers import mount_table

CASES = 150
SEED = int(os.environ.get("MOUNTNS_FUZZ_SEED", "20261130"))

# name: (code, whether it ends or stops the process running it)
ACTIONS = {
    "pass": ("pass", False),
    "raise": ("raise ValueError('hostile')", False),
    "segfault": ("os.kill(os.getpid(), signal.SIGSEGV)", True),
    "abort": ("os.abort()", True),
    "sigkill": ("os.kill(os.getpid(), signal.SIGKILL)", True),
    "exit0": ("os._exit(0)", True),
    "exit3": ("os._exit(3)", True),
    "closerange": ("os.closerange(3, 1024)", True),
    "stop": ("os.kill(os.getpid(), signal.SIGSTOP)", True),
    "bomb": ("bomb(4)", False),
    "refork": ("subprocess.Popen([sys.executable, '-c', REFORK, MARKER])", False),
    "daemon": ("daemon()", False),
    "output": ("shout(1 << 20)", False),
    "cover_proc": ("subprocess.run(['mount', '-t', 'tmpfs', 'x', '/proc'], check=True)", False),
    "cover_root": ("mount_over_root()", False),
    "hang": ("time.sleep(600)", False),
}
RARE = {"stop": 0.02, "hang": 0.02}  # each costs seconds: the stop grace, the timeout

PROLOGUE = """
import ctypes, os, signal, subprocess, sys, time, pytest

MARKER = {marker!r}
REFORK = (
    "import os, time\\n"
    "while True:\\n"
    "    if os.fork():\\n"
    "        os._exit(0)\\n"
    "    time.sleep(0.001)\\n"
)

def sleeper():
    test = os.environ.get("PYTEST_CURRENT_TEST", "?")  # says who left it, if it is left
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", MARKER, test])

def bomb(depth):
    for _ in range(depth):
        os.fork()
    if os.getpid() != TEST_PID:
        sleeper()

def daemon():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            sleeper()
        os._exit(0)
    os.wait()

def shout(size):
    os.write(1, b"o" * size)
    os.write(2, b"e" * size)

def mount_over_root():
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mount(b"x", b"/", b"tmpfs", 0, b"size=1m") == 0

TEST_PID = None

@pytest.fixture(autouse=True)
def remember_pid():
    global TEST_PID
    TEST_PID = os.getpid()
"""


def pick(rng: random.Random) -> str:
    names = [name for name in ACTIONS if name not in RARE]
    if rng.random() < sum(RARE.values()):
        return rng.choice(list(RARE))
    return rng.choice(names)


def generate(rng: random.Random, mode: str, marker: str) -> tuple[str, int]:
    """An inner test module of ``CASES`` hostile tests, and how many it holds."""
    lines = [PROLOGUE.format(marker=marker)]
    for case in range(CASES):
        phase = rng.choice(["setup", "call", "teardown"])
        actions = [pick(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
        fatal = any(ACTIONS[action][1] for action in actions)
        body = "\n".join(f"    {ACTIONS[action][0]}" for action in actions)
        # What ends or stops pytest's own process cannot run in-process, as without isolation.
        fork = ", fork=True" if mode == "inprocess" and (fatal or "hang" in actions) else ""
        timeout = ", timeout=2" if "hang" in actions else ""
        marker_line = f"@pytest.mark.mountns({fork.lstrip(', ')}{timeout})".replace("(, ", "(")
        name = f"test_{case:03d}_{phase}_{'_'.join(actions)}"
        if phase == "call":
            lines.append(f"{marker_line}\ndef {name}():\n{body}\n")
        else:
            fixture = f"hostile_{case}"
            around = f"{body}\n    yield" if phase == "setup" else f"    yield\n{body}"
            lines.append(f"@pytest.fixture\ndef {fixture}():\n{around}\n")
            lines.append(f"{marker_line}\ndef {name}({fixture}):\n    pass\n")
    return "\n".join(lines), CASES


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f"{pid} {f.read().replace(bytes(1), b' ').decode(errors='replace')}"
    except OSError:
        return str(pid)


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        with open(f"/proc/{entry}/stat", "rb") as stat:
                            if stat.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                                found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("mode", ["fork", "inprocess"])
def test_hostile_tests_never_break_the_run(tmp_path: Path, mode: str) -> None:
    marker = f"mountns-fuzz-{os.getpid()}-{time.monotonic_ns()}"
    source, count = generate(random.Random(f"{SEED}-{mode}"), mode, marker)
    (tmp_path / "test_hostile.py").write_text(source)
    before = mount_table()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
        "-q", f"--mountns-mode={mode}", "--junitxml=junit.xml", f"--basetemp={tmp_path / 'bt'}",
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, timeout=300, check=False
    )
    output = completed.stdout.decode(errors="replace") + completed.stderr.decode(errors="replace")
    tail = f"seed {SEED}, mode {mode}:\n{output[-3000:]}"
    assert "INTERNALERROR" not in output, tail
    assert completed.returncode == 1, tail  # some fail, none breaks the run
    junit = ElementTree.parse(tmp_path / "junit.xml")
    names = [case.get("name") for case in junit.iter("testcase")]
    assert len(names) == len(set(names)) == count, tail  # every test reported, once
    assert mount_table() == before
    left = processes_with(marker)
    assert left == [], f"left running: {[describe(pid) for pid in left]}; {tail}"
