"""Whatever an isolated test does: the host keeps its mounts, nothing lives on, pytest goes on."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._helpers import ctrl_c_works, outcomes, run_in_shared_root


def alive(pid: int) -> bool:
    """A process lives while any of its threads does, its main thread ended or not."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return any(alive_task(pid, task) for task in tasks)


def alive_task(pid: int, task: str) -> bool:
    try:
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_until_gone(pids: list[int], seconds: float = 5) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory``: what a pytest run there left.

    This process is left out: pytester made ``directory`` its working directory too.
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(directory):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


SLEEPER = """
import os, signal, subprocess, time, pytest

def record(pid):
    with open({pids!r}, "a") as f:
        f.write(f"{{pid}}\\n")

def sleep_ignoring_sigterm():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record(os.getpid())
    record(subprocess.Popen(["sleep", "300"]).pid)
    print("so far so good")
    time.sleep(300)
"""


@pytest.mark.parametrize(
    ("marker", "args", "ini", "expected"),
    [
        ("@pytest.mark.mountns(timeout=0.5)", [], "", "0.5s"),
        ("@pytest.mark.mountns", ["--mountns-timeout=0.5"], "", "0.5s"),
        ("@pytest.mark.mountns", [], "mountns_timeout = 0.5", "0.5s"),
        ("@pytest.mark.mountns(timeout=0.5)", ["--mountns-timeout=60"], "", "0.5s"),
        ("@pytest.mark.mountns", ["--mountns-timeout=0.5"], "mountns_timeout = 60", "0.5s"),
    ],
    ids=["marker", "option", "ini", "marker-beats-option", "option-beats-ini"],
)
def test_a_timeout_kills_the_tree_reports_stacks_and_the_session_goes_on(
    pytester: pytest.Pytester, marker: str, args: list[str], ini: str, expected: str
) -> None:
    pids = pytester.path / "pids.txt"
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(
        SLEEPER.format(pids=str(pids))
        + f"""
{marker}
def test_hangs():
    sleep_ignoring_sigterm()

def test_next():
    pass
"""
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess(*args, timeout=60)
    assert time.monotonic() - started < 30
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            f"mountns: the isolated test timed out after {expected} during call",
            "*in sleep_ignoring_sigterm*",
            "*Captured stdout call*",
            "so far so good",
        ]
    )
    assert len(pids_in(pids)) == 2
    assert wait_until_gone(pids_in(pids)) == []


def test_a_daemonized_grandchild_is_killed_and_reported(pytester: pytest.Pytester) -> None:
    pids = pytester.path / "pids.txt"
    pytester.makepyfile(
        f"""
import os, time, pytest

@pytest.mark.mountns
def test_daemonizes():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open({str(pids)!r}, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(300)
        os._exit(0)
    while not os.path.exists({str(pids)!r}):
        time.sleep(0.01)
"""
    )
    result = pytester.runpytest_subprocess(timeout=60)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*LeftoverProcessWarning: mountns: killed 1 process(es) the test left running: *python*"]
    )
    assert wait_until_gone(pids_in(pids)) == []


def test_a_server_an_in_process_test_left_running_is_killed_and_reported(
    pytester: pytest.Pytester,
) -> None:
    """It runs in the test's namespace and keeps it alive: as in fork mode, it ends."""
    pids = pytester.path / "pids.txt"
    pytester.makepyfile(
        f"""
import subprocess, pytest

@pytest.mark.mountns(fork=False)
def test_starts_a_server():
    with open({str(pids)!r}, "w") as f:
        f.write(str(subprocess.Popen(["sleep", "300"]).pid))

def test_after():
    pass
"""
    )
    result = pytester.runpytest_subprocess(timeout=60)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*test_starts_a_server*",
            "*LeftoverProcessWarning: mountns: killed 1 process(es)*sleep 300*",
        ]
    )
    assert wait_until_gone(pids_in(pids)) == []


def test_what_a_crashed_test_left_is_killed_too(pytester: pytest.Pytester) -> None:
    """Named by its command line even when it was still inside its ``execve`` (Popen
    returns before the new program's arguments are in place) as the child died."""
    pids = pytester.path / "pids.txt"
    pytester.makepyfile(
        f"""
import os, signal, subprocess, pytest

@pytest.mark.parametrize("n", range(20))
@pytest.mark.mountns
def test_spawns_then_dies(n):
    with open({str(pids)!r}, "a") as f:
        f.write(f"{{subprocess.Popen(['sleep', '300']).pid}}\\n")
    os.kill(os.getpid(), signal.SIGKILL)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:xdist", timeout=120)
    result.assert_outcomes(failed=20, warnings=20)
    killed = re.findall(
        r"killed 1 process\(es\) the test left running: \d+ (.*)", result.stdout.str()
    )
    assert killed == ["sleep 300"] * 20
    assert wait_until_gone(pids_in(pids)) == []


MAIN_THREAD_ENDS = """
import ctypes, os, subprocess, sys, time, pytest

PROGRAM = (  # the main thread ends (pthread_exit, as C programs may); a thread goes on
    "import ctypes, sys, threading, time\\n"
    "threading.Thread(target=time.sleep, args=(300,)).start()\\n"
    "open(sys.argv[1], 'w').close()\\n"
    "ctypes.CDLL(None).syscall(60, 0)\\n"
)

def start(name):
    ready = os.path.abspath(name)
    with open({pids!r}, "a") as f:
        f.write(f"{{subprocess.Popen([sys.executable, '-c', PROGRAM, ready]).pid}}\\n")
    while not os.path.exists(ready):
        time.sleep(0.01)
    time.sleep(0.2)  # its main thread is gone by now: it reads as a zombie

@pytest.mark.mountns
def test_returns():
    start("returned")

@pytest.mark.mountns(fork=True)
def test_crashes():
    start("crashed")
    os._exit(3)
"""


@pytest.mark.both_modes
def test_a_process_whose_main_thread_ended_is_still_found_and_killed(
    pytester: pytest.Pytester,
) -> None:
    """Its main thread reads as a zombie with no namespace while another thread runs:
    the process lives on, in the test's child and in pytest's process after a crash."""
    pids = pytester.path / "pids.txt"
    pytester.makepyfile(MAIN_THREAD_ENDS.format(pids=str(pids)))
    result = pytester.runpytest_subprocess("-p", "no:xdist", timeout=60)
    result.assert_outcomes(passed=1, failed=1, warnings=2)
    killed = re.findall(
        r"killed 1 process\(es\) the test left running: (\d+) (.*)", result.stdout.str()
    )
    assert [(int(pid), command.split()[1:3]) for pid, command in killed] == [
        (pid, ["-c", "import"]) for pid in pids_in(pids)
    ]
    assert wait_until_gone(pids_in(pids)) == []


@pytest.mark.parametrize("to", ["pytest", "its process group"])
def test_ctrl_c_stops_the_session_tears_down_and_leaves_no_process(
    pytester: pytest.Pytester, to: str
) -> None:
    """From a terminal every process of the group gets SIGINT; from kill, only pytest."""
    pids = pytester.path / "pids.txt"
    torn_down = pytester.path / "torn-down.txt"
    pytester.makepyfile(
        SLEEPER.format(pids=str(pids))
        + f"""
@pytest.fixture
def resource():
    yield
    with open({str(torn_down)!r}, "w") as f:
        f.write("function fixture torn down")

@pytest.mark.mountns
def test_hangs(resource):
    sleep_ignoring_sigterm()

@pytest.mark.mountns  # forked ahead, waiting, when Ctrl-C comes
def test_never_runs():
    raise AssertionError("ran after Ctrl-C")
"""
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=ctrl_c_works,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(pids_in(pids)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        if to == "pytest":
            process.send_signal(signal.SIGINT)
        else:
            os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output and "ran after Ctrl-C" not in output
    assert torn_down.read_text() == "function fixture torn down"
    assert wait_until_gone(pids_in(pids)) == []
    assert wait_until_gone(processes_in(pytester.path)) == [], "a child of pytest lives on"


def test_a_killed_pytest_takes_its_isolated_child_along(pytester: pytest.Pytester) -> None:
    pids = pytester.path / "pids.txt"
    pytester.makepyfile(
        SLEEPER.format(pids=str(pids))
        + """
@pytest.mark.mountns
def test_hangs():
    sleep_ignoring_sigterm()

@pytest.mark.mountns  # forked ahead, waiting
def test_next():
    pass
"""
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(pids_in(pids)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()
        process.wait(timeout=30)
        child = pids_in(pids)[0]
        assert wait_until_gone([child]) == [], "the isolated child outlived pytest"
        # The test's own `sleep` is orphaned, not killed: no PID namespace (docs/limitations.md).
        others = [pid for pid in processes_in(pytester.path) if pid not in pids_in(pids)]
        assert wait_until_gone(others) == [], "a spare outlived pytest"
    finally:
        for pid in pids_in(pids):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_until_gone(pids_in(pids))  # dead, not only signalled, before the next test looks


@pytest.mark.skipif(os.geteuid() != 0, reason="nsenter into pytest's namespace needs root")
@pytest.mark.parametrize("mode", ["fork", "inprocess"])
def test_a_mount_made_in_pytest_s_namespace_fails_the_test(
    pytester: pytest.Pytester, mode: str
) -> None:
    """Root mode is no security boundary; the plugin notices, names the mount, and says so.

    pytest runs in a throwaway namespace, which stands for the host here.
    """
    target = pytester.mkdir("target")
    pytester.makeconftest(
        """
import os
import re
PYTEST_NAMESPACE = f"/proc/{os.getpid()}/fd/{os.open('/proc/thread-self/ns/mnt', os.O_RDONLY)}"
"""
    )
    pytester.makepyfile(
        f"""
import subprocess, pytest
from conftest import PYTEST_NAMESPACE

@pytest.mark.mountns
def test_escapes():
    subprocess.run(["nsenter", "--mount=" + PYTEST_NAMESPACE,
                    "mount", "-t", "tmpfs", "escaped", {str(target)!r}], check=True)

def test_next():
    pass
"""
    )
    pytest_command = f"{shlex.quote(sys.executable)} -m pytest -p no:cacheprovider"
    result = run_in_shared_root(f"{pytest_command} --mountns-mode={mode}", pytester.path)
    assert outcomes(result.stdout) == {"passed": 2, "errors": 1}, result.stdout + result.stderr
    assert "the host's mount table changed while the isolated test ran" in result.stdout
    assert f"  + {target} (tmpfs from escaped, shared" in result.stdout


def test_a_full_tmpfs_is_enospc_inside_and_the_host_disk_untouched(
    pytester: pytest.Pytester,
) -> None:
    target = pytester.mkdir("target")
    pytester.makepyfile(
        f"""
import errno, pytest

@pytest.mark.mountns(tmpfs={{{str(target)!r}: "size=64k"}})
def test_fills_it():
    with pytest.raises(OSError) as excinfo:
        with open({str(target / "big")!r}, "wb") as f:
            f.write(b"x" * 1_000_000)
    assert excinfo.value.errno == errno.ENOSPC
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert os.listdir(target) == []


def test_no_descriptor_leaks_over_many_isolated_tests(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import os
import re

COUNTS = []

def pytest_runtest_logfinish(nodeid):
    if nodeid.endswith(("[10]", "[299]")):  # once everything lazy has been opened
        COUNTS.append(len(os.listdir("/proc/self/fd")))

def pytest_sessionfinish(session):
    with open("fds.txt", "w") as f:
        f.write(" ".join(map(str, COUNTS)))
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.parametrize("i", range(300))
def test_isolated(i):
    print("x" * (i * 100))
"""
    )
    pytester.runpytest_subprocess("--mountns-all", "-q", timeout=240).assert_outcomes(passed=300)
    before, after = map(int, (pytester.path / "fds.txt").read_text().split())
    assert after <= before


def test_bad_timeouts_are_usage_errors_or_declaration_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns(timeout=-1)
def test_negative(): pass
"""
    )
    result = pytester.runpytest_subprocess("--mountns-timeout=soon", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*argument --mountns-timeout: must be a positive number of seconds, not 'soon'"]
    )
    pytester.makeini("[pytest]\nmountns_timeout = 0\n")
    result = pytester.runpytest_subprocess(timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini mountns_timeout='0': must be a positive number*"])
    (pytester.path / "tox.ini").unlink()
    result = pytester.runpytest_subprocess(timeout=60)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_negative: @pytest.mark.mountns timeout=: must be a*"])


@pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in for the host needs root to set up")
def test_the_leak_check_works_in_a_user_namespace_too(pytester: pytest.Pytester) -> None:
    """pytest as uid 65534, without capabilities, in a mount namespace of its own that stands
    for the host; while a test runs, something mounts there (root, from outside, on the
    test's request): the test fails, naming the mount."""
    os.chmod(pytester.path, 0o777)
    target = pytester.mkdir("target")
    request, mounted, pid = (pytester.path / name for name in ("request", "mounted", "pid"))
    pytester.makeconftest(f"open({str(pid)!r}, 'w').write(str(__import__('os').getpid()))")
    pytester.makepyfile(
        f"""
import os, time, pytest

@pytest.mark.mountns
def test_during_which_the_host_mounts():
    open({str(request)!r}, "w").close()
    deadline = time.monotonic() + 60  # only a bound against a hang
    while not os.path.exists({str(mounted)!r}) and time.monotonic() < deadline:
        time.sleep(0.01)

def test_next():
    pass
"""
    )
    host_mounts_on_request = (
        f"(for i in $(seq 6000); do [ -e {request} ] && break; sleep 0.01; done; "
        f'nsenter --target "$(cat {pid})" --mount mount -t tmpfs leaked {target}; '
        f"touch {mounted}) &"
    )
    as_nobody = "unshare --user --map-user=65534 --map-group=65534 --mount --propagation private"
    pytest_command = shlex.join([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"])
    result = subprocess.run(
        ["sh", "-c", f"{host_mounts_on_request} {as_nobody} {pytest_command}; wait"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "isolation available (user namespace as uid 65534" in result.stdout, result.stdout
    assert outcomes(result.stdout) == {"passed": 2, "errors": 1}, result.stdout + result.stderr
    assert "the host's mount table changed while the isolated test ran" in result.stdout
    assert f"  + {target} (tmpfs from leaked, private)" in result.stdout
    assert os.listdir(target) == []
