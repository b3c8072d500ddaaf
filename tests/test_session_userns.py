"""One user namespace for the session: in-process isolation for a normal user.

The main path runs as a real unprivileged user (uid 65534, no capabilities,
so the host's file permissions are the real ones) in a throwaway root, and is
compared with the same tests without isolation: what a test may write, its
ids and the capabilities of what it starts are the same.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_mountns import _linux, _session
from tests._helpers import answer_of_a_child, outcomes, run_while_the_host_mounts
from tests._throwaway_root import NOBODY, Run, run_pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="a throwaway root needs root to build"),
    pytest.mark.fork_only(reason="each inner run chooses its own runner"),
]

AS_NOBODY = "unshare --user --map-user=65534 --map-group=65534 --"
BASETEMP = "/tmp/basetemp"

# Root's files at the top of the root; the user's own read-only file in /project.
LAYOUT = """
printf r > /rootfile && chmod 644 /rootfile
mkdir -m 755 /rootdir
printf o > /project/own-readonly && chmod 444 /project/own-readonly
chown "$(stat -c %u /project):$(stat -c %g /project)" /project/own-readonly
"""

PROJECT = """
import errno, os, subprocess, pytest

PID = os.getpid()
NAMESPACES = {kind: os.stat(f"/proc/self/ns/{kind}").st_ino for kind in ("mnt", "user")}
RUNNER, USER_NAMESPACE = open("/project/expected").read().split()

def refused(path):
    try:
        with open(path, "a") as f:
            f.write("written")
    except OSError as error:
        return error.errno
    return None

def test_runs_where_it_was_asked():
    isolated = os.stat("/proc/thread-self/ns/mnt").st_ino != NAMESPACES["mnt"]
    assert isolated is (RUNNER != "plain")
    assert (os.getpid() == PID) is (RUNNER in ("plain", "inprocess"))
    own_user_namespace = os.stat("/proc/self/ns/user").st_ino != NAMESPACES["user"]
    assert own_user_namespace is (USER_NAMESPACE == "per-test")

def test_ids_are_the_user_s():
    assert (os.getuid(), os.getgid(), os.geteuid(), os.getegid()) == (65534,) * 4

def test_root_s_files_stay_unwritable():
    assert refused("/rootfile") == errno.EACCES
    assert refused("/rootdir/new") == errno.EACCES

def test_the_user_s_own_read_only_file_stays_unwritable():
    assert refused("/project/own-readonly") == errno.EACCES

def test_what_it_starts_holds_no_capability():
    status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
    fields = dict(line.split(":\\t", 1) for line in status.splitlines() if ":\\t" in line)
    assert (fields["CapEff"], fields["CapPrm"], fields["CapAmb"]) == ("0" * 16,) * 3
"""
TESTS = PROJECT.count("\ndef test_")


def pytest_as_nobody(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest as uid 65534 in a user namespace of its own (``unshare --map-user``): where
    only ids and threads matter, not file permissions."""
    os.chmod(project, 0o777)
    command = [*AS_NOBODY.split(), sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def run_as_nobody(tmp_path: Path, expected: str, *args: str) -> Run:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "test_session.py").write_text(PROJECT)
    (directory / "expected").write_text(expected)
    workdir = tmp_path / "run"
    workdir.mkdir()
    return run_pytest(directory, *args, workdir=workdir, uid=NOBODY, setup_as_root=LAYOUT)


def assert_all_passed(result: Run) -> None:
    failures = {name: r for name, r in result.results.items() if r[0] != "passed"}
    assert not failures, f"{failures}\n{result.stdout}\n{result.stderr}"
    assert len(result.results) == TESTS, result.stdout
    assert result.changes(BASETEMP) == {}


SESSION_HEADER = (
    "mountns: isolation available (one user namespace for the session, as uid 65534, gid 65534: "
    "a plain mount namespace per test)"
)
WHAT_CHANGES = (
    "mountns: the whole run is in one user namespace, which maps uid 65534 and gid 65534 only: "
    "other users' files show as owned by the overflow id (nobody), setuid programs (sudo) gain "
    "nothing, the host's later mounts show, and the programs tests start are in it too"
)


@pytest.mark.parametrize(
    ("args", "expected", "header"),
    [
        pytest.param((), "plain session", None, id="plain-pytest"),
        pytest.param(
            ("--mountns-all",),
            "fork per-test",
            "isolation available (user namespace as uid 65534, gid 65534); mode fork;",
            id="fork",
        ),
        pytest.param(
            ("--mountns-all", "--mountns-mode=inprocess"),
            "inprocess session",
            f"{SESSION_HEADER}; mode inprocess (tests with a timeout fork);",
            id="inprocess-auto",
        ),
        pytest.param(
            ("--mountns-all", "--mountns-mode=inprocess", "--mountns-userns=session"),
            "inprocess session",
            f"{SESSION_HEADER}; mode inprocess (tests with a timeout fork);",
            id="inprocess-session",
        ),
        pytest.param(
            ("--mountns-all", "--mountns-userns=session"),
            "fork session",
            f"{SESSION_HEADER}; mode fork;",
            id="fork-session",
        ),
    ],
)
def test_a_normal_user_s_tests_behave_as_without_the_plugin(
    tmp_path: Path, args: tuple[str, ...], expected: str, header: str | None
) -> None:
    """Plain pytest is the reference: the same tests pass in every way of isolating them.

    ``plain session``: without the plugin's isolation the tests' namespaces are pytest's own.
    """
    result = run_as_nobody(tmp_path, expected, *args)
    assert_all_passed(result)
    if header is not None:
        assert header in result.stdout, result.stdout
    assert (WHAT_CHANGES in result.stdout) is ("session" in expected and bool(args)), result.stdout


def test_xdist_workers_inherit_the_session_and_isolate_in_process(tmp_path: Path) -> None:
    """The controller enters the session before it starts the workers, which inherit it; what
    the tests start holds no capability (the workers drop the ones they were given)."""
    args = ("-p", "xdist.plugin", "-n", "2", "--mountns-all", "--mountns-mode=inprocess")
    result = run_as_nobody(tmp_path, "inprocess session", *args)
    assert_all_passed(result)
    assert SESSION_HEADER in result.stdout, result.stdout


def test_threads_before_configure_keep_per_test_user_namespaces_and_say_why(
    pytester: pytest.Pytester,
) -> None:
    """A conftest that starts a thread makes the session impossible: every test forks, in a
    user namespace of its own, and the header names the thread."""
    pytester.makeconftest(
        """
import threading
threading.Thread(target=threading.Event().wait, name="early-bird", daemon=True).start()
"""
    )
    pytester.makepyfile(
        """
import os
PID = os.getpid()

def test_forked():
    assert os.getpid() != PID
"""
    )
    done = pytest_as_nobody(pytester.path, "--mountns-all", "--mountns-mode=inprocess")
    # The warning: a forked child has none of the threads (ThreadsAtForkWarning).
    assert outcomes(done.stdout) == {"passed": 1, "warnings": 1}, done.stdout + done.stderr
    assert (
        "mode fork, as inprocess is unavailable: it needs CAP_SYS_ADMIN; isolation here takes a "
        "user namespace per test, which a thread cannot leave, and one for the whole session "
        "could not be entered: pytest's process already runs 1 other thread(s) (early-bird) "
        "when the plugin configures, and only a single-threaded process may enter a user "
        "namespace: a conftest or a plugin started them early"
    ) in done.stdout
    done = pytest_as_nobody(pytester.path, "--mountns-all", "--mountns-userns=session")
    assert outcomes(done.stdout) == {"passed": 1, "warnings": 1}, done.stdout + done.stderr
    assert "isolation available (user namespace as uid 65534, gid 65534); mode fork;" in done.stdout
    assert (
        "mountns: no user namespace for the session: pytest's process already runs 1 other "
        "thread(s) (early-bird)"
    ) in done.stdout


def test_the_session_is_a_slave_of_the_host_s_mounts(pytester: pytest.Pytester) -> None:
    """A test with slave propagation, in-process in the session, sees a mount the host
    makes while it runs: the session's namespace receives the host's mounts."""
    late = pytester.mkdir("late")
    ready, mounted = pytester.path / "ready", pytester.path / "mounted"
    os.chmod(pytester.path, 0o777)
    pytester.makepyfile(
        f"""
import os, time, pytest

PID = os.getpid()

@pytest.mark.mountns(propagation="slave")
def test_waits_for_a_host_mount():
    assert os.getpid() == PID
    open({str(ready)!r}, "w").close()
    deadline = time.monotonic() + 60  # only a bound against a hang
    while not os.path.exists({str(mounted)!r}) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(line.split()[4] == {str(late)!r} for line in open("/proc/self/mountinfo"))
"""
    )
    result = run_while_the_host_mounts(
        pytester.path, ready, late, mounted, "--mountns-mode=inprocess", prefix=AS_NOBODY
    )
    assert outcomes(result.stdout) == {"passed": 1}, result.stdout + result.stderr
    assert SESSION_HEADER in result.stdout


def test_a_process_with_threads_is_left_as_it_was() -> None:
    """Checked before anything: the reason names the thread, and the process is unchanged."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="holds-the-session-back")
    thread.start()
    user_namespace = os.stat("/proc/self/ns/user").st_ino
    try:
        reason = _session.start(for_workers=False)
    finally:
        stop.set()
        thread.join()
    assert reason is not None and "holds-the-session-back" in reason, reason
    assert os.stat("/proc/self/ns/user").st_ino == user_namespace


def test_a_failure_after_the_way_back_is_gone_stops_the_run(tmp_path: Path) -> None:
    """Past ``unshare(CLONE_NEWUSER)`` there is no way back: a failure to set the namespace up
    is not a fallback but the end of the run, with the reason. In a forked child, which has
    no thread, with the id mapping made to fail."""

    def strand() -> str:
        _session.why_not = lambda: None  # type: ignore[assignment]
        _linux.map_own_ids = _refuse  # type: ignore[assignment]
        try:
            _session.start(for_workers=False)
        except _session.Stranded as error:
            return str(error)
        return "no error"

    answer = answer_of_a_child(strand)
    assert answer == (
        "mountns: pytest's process entered a user namespace for the session but could not set "
        "it up ([Errno 1] refused here: '/proc/self/uid_map'); it cannot go back, so the run "
        "stops. Run with --mountns-userns=auto and the default fork mode."
    )


def _refuse(uid: int, gid: int) -> None:
    raise PermissionError(errno.EPERM, "refused here", "/proc/self/uid_map")


def test_a_stranded_session_ends_pytest_with_the_reason(pytester: pytest.Pytester) -> None:
    """The plugin's side of it: exit code 3 and the message, before any test runs."""
    pytester.makeconftest(
        """
from pytest_mountns import _linux, _session

def refuse(uid, gid):
    raise PermissionError(1, "refused here", "/proc/self/uid_map")

_session.why_not = lambda: None
_linux.map_own_ids = refuse
"""
    )
    pytester.makepyfile("def test_never_runs(): pass")
    done = pytest_as_nobody(pytester.path, "--mountns-mode=inprocess")
    assert done.returncode == pytest.ExitCode.INTERNAL_ERROR, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "entered a user namespace for the session but could not set it up" in output
    assert "test_never_runs" not in output
