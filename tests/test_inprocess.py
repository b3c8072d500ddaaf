"""The in-process runner: pytest's own thread goes into the test's namespace and comes back.

The shared behaviour (every keyword, fixtures, outcomes, plugins) runs under
both runners in the ``both_modes`` modules; here is what is particular to
this one: where it runs, the way back after failures, threads, fallbacks.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_mountns import _linux, _thread_namespace
from tests._helpers import mount_table, outcomes, run_in_shared_root

PLACE = """
import os, threading

PYTEST_PID = os.getpid()
AT_FORK = {}


def plugin_threads():
    '''The plugin's own threads alive in this process (an xdist worker has execnet's
    threads come and go too: counting them all would be a race).'''
    return [t.name for t in threading.enumerate() if t.name.startswith("pytest-mountns-")]


def pytest_runtest_logreport(report):
    '''Here, in pytest's process, once a forked test's child has started.'''
    if report.when == "setup":
        AT_FORK[report.nodeid.rsplit("::", 1)[-1]] = plugin_threads()


def place():
    '''Where this thread is: process, namespace, working directory, root, umask.'''
    namespace = os.stat("/proc/thread-self/ns/mnt").st_ino
    umask = os.umask(0o022)
    os.umask(umask)
    return os.getpid(), namespace, os.getcwd(), os.stat("/").st_ino, umask
"""


def where_am_i() -> tuple[int, int, str, int, int]:
    namespace = os.stat("/proc/thread-self/ns/mnt").st_ino
    umask = os.umask(0o022)
    os.umask(umask)
    return os.getpid(), namespace, os.getcwd(), os.stat("/").st_ino, umask


def test_the_test_runs_in_pytest_s_process_in_its_own_namespace(
    pytester: pytest.Pytester,
) -> None:
    """``fork=False`` under the default mode, ``fork=True`` under ``--mountns-mode=inprocess``."""
    pytester.makeconftest(PLACE)
    target = pytester.mkdir("target")
    pytester.makepyfile(
        f"""
import os, pytest
from conftest import AT_FORK, PYTEST_PID, place, plugin_threads

BEFORE = place()

@pytest.mark.mountns({str(target)!r}, fork=False)
def test_in_process():
    pid, namespace, *_ = place()
    assert pid == PYTEST_PID and namespace != BEFORE[1]
    with open({str(target / "written")!r}, "w") as f:
        f.write("only in the namespace")
    os.chdir("/")
    os.umask(0o077)

def test_unisolated_after_it():
    # no thread of the plugin's left while a test runs in pytest's process (it may fork)
    assert plugin_threads() == []

@pytest.mark.mountns(fork=True)
def test_forked():
    assert os.getpid() != PYTEST_PID

def test_back_where_it_was():
    assert place() == BEFORE
    assert os.listdir({str(target)!r}) == []
    # pytest forked test_forked with no thread of the plugin's left (3.12 warns of those)
    assert AT_FORK["test_forked"] == []
"""
    )
    before = where_am_i()
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
    pytester.runpytest("-p", "no:cacheprovider", "--mountns-mode=inprocess").assert_outcomes(
        passed=4
    )
    assert where_am_i() == before


def test_the_header_names_the_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--mountns-mode=inprocess")
    result.stdout.fnmatch_lines(["mountns: * mode inprocess (tests with a timeout fork); *"])
    result = pytester.runpytest("-o", "mountns_mode=inprocess", "--mountns-timeout=5")
    result.stdout.fnmatch_lines(
        ["mountns: * mode fork, as the session's timeout (mountns_timeout) needs a forked child; *"]
    )
    result = pytester.runpytest("--mountns-mode=inprocess", "--mountns-userns=always")
    result.stdout.fnmatch_lines(
        [
            "mountns: * mode fork, as inprocess is unavailable: "
            "--mountns-userns=always takes a user namespace, which a thread cannot leave; *"
        ]
    )
    result = pytester.runpytest("-o", "mountns_mode=sometimes")
    result.stderr.fnmatch_lines(["*ini mountns_mode='sometimes': must be one of fork, inprocess"])


def test_a_timeout_forks_and_fork_false_with_a_timeout_is_refused(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(PLACE)
    pytester.makepyfile(
        """
import os, pytest
from conftest import PYTEST_PID

@pytest.mark.mountns(timeout=30)
def test_with_a_timeout():
    assert os.getpid() != PYTEST_PID

@pytest.mark.mountns
def test_isolated_under_the_session_timeout():
    assert os.getpid() != PYTEST_PID

@pytest.mark.mountns(fork=False)
def test_closer_than_the_session_timeout():
    assert os.getpid() == PYTEST_PID

@pytest.mark.mountns(timeout=30)
class TestContradiction:
    @pytest.mark.mountns(fork=False)
    def test_both(self):
        pass
"""
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--mountns-mode=inprocess", "--mountns-timeout=60"
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_both: @pytest.mark.mountns fork=False: cannot be combined with timeout=30: "
            "only a forked child can be stopped when it overruns"
        ]
    )


def test_without_cap_sys_admin_fork_false_forks_and_says_why(pytester: pytest.Pytester) -> None:
    """As a normal user isolation takes a user namespace per test, which a thread cannot
    leave; in the default fork mode ``auto`` never enters one for the session."""
    pytester.makeconftest(PLACE)
    target = pytester.mkdir("target")
    pytester.makepyfile(
        f"""
import os, pytest
from conftest import PYTEST_PID

@pytest.mark.mountns({str(target)!r})
def test_forks_as_it_asks():
    assert os.getpid() != PYTEST_PID
    open({str(target / "x")!r}, "w").close()

@pytest.mark.mountns({str(target)!r}, fork=False)
def test_asks_for_it_by_marker():
    assert os.getpid() != PYTEST_PID
"""
    )
    os.chmod(pytester.path, 0o777)
    pytest_command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    command = ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--"]
    done = subprocess.run(
        [*command, *pytest_command],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "isolation available (user namespace as uid 65534, gid 65534); mode fork;" in done.stdout
    summary = (
        "mountns: 1 test(s) asked for in-process isolation and forked instead: it needs "
        "CAP_SYS_ADMIN; isolation here takes a user namespace per test, which a thread cannot "
        "leave (--mountns-userns=session enters one for the whole session)"
    )
    assert summary in done.stdout
    assert outcomes(done.stdout) == {"passed": 2}, done.stdout
    assert os.listdir(target) == []


def test_a_failure_halfway_through_the_mounts_leaves_nothing(pytester: pytest.Pytester) -> None:
    """The first tmpfs is mounted, the second cannot be made inside it: a setup error."""
    pytester.makeconftest(PLACE)
    outer = pytester.mkdir("outer")
    pytester.makepyfile(
        f"""
import os, pytest
from conftest import place

BEFORE = place()

@pytest.mark.mountns(tmpfs={{{str(outer)!r}: "nr_inodes=1", {str(outer / "a" / "b")!r}: "size=1m"}})
def test_half_mounted():
    pass

def test_back_where_it_was():
    assert place() == BEFORE
"""
    )
    before = mount_table(), where_am_i()
    result = pytester.runpytest("-p", "no:cacheprovider", "--mountns-mode=inprocess")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*mountns: could not set up the isolated namespace: [[]Errno 28[]] No space left*"]
    )
    assert (mount_table(), where_am_i()) == before
    assert os.listdir(outer) == []


@pytest.mark.parametrize("ending", ["raise KeyboardInterrupt", "pytest.exit('enough')"])
def test_ctrl_c_and_exit_come_back_after_the_test_s_teardown(
    pytester: pytest.Pytester, ending: str
) -> None:
    """The test's own fixtures end inside its namespace; the thread comes back all the same."""
    pytester.makeconftest(PLACE)
    target = pytester.mkdir("target")
    log = pytester.path / "log"
    pytester.makepyfile(
        f"""
import os, pytest

@pytest.fixture
def sees_the_tmpfs():
    open({str(target / "made")!r}, "w").close()
    yield
    with open({str(log)!r}, "w") as f:
        f.write(" ".join(os.listdir({str(target)!r})))

@pytest.mark.mountns({str(target)!r})
def test_stops(sees_the_tmpfs):
    os.chdir({str(target)!r})
    {ending}

def test_never_runs():
    pass
"""
    )
    before = mount_table(), where_am_i()
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--mountns-mode=inprocess", no_reraise_ctrlc=True
    )
    assert result.ret == 2
    assert (mount_table(), where_am_i()) == before
    assert log.read_text() == "made"
    assert os.listdir(target) == []


def test_threads_stay_where_they_started(pytester: pytest.Pytester) -> None:
    """One started by the test stays in its namespace; one that existed never sees its mounts."""
    pytester.makeconftest(PLACE)
    target = pytester.mkdir("target")
    pytester.makepyfile(
        f"""
import os, queue, threading, pytest

TARGET = {str(target)!r}
asks, answers = queue.Queue(), queue.Queue()

def answer_what_i_see():
    while asks.get():
        answers.put(os.listdir(TARGET))

earlier = threading.Thread(target=answer_what_i_see, daemon=True)
earlier.start()
later = {{}}

def teardown_module():  # this runs in the suite's own process: leave no thread behind
    asks.put(False)
    earlier.join(10)

@pytest.mark.mountns(TARGET)
def test_mounts_and_starts_a_thread():
    open(os.path.join(TARGET, "inside"), "w").close()
    asks.put(True)
    assert answers.get(timeout=10) == []
    later["asks"], later["answers"] = queue.Queue(), queue.Queue()
    def run():
        os.chdir(TARGET)  # shares the test's working directory, and its namespace
        while later["asks"].get():
            later["answers"].put(os.listdir(TARGET))
    later["thread"] = threading.Thread(target=run, daemon=True)
    later["thread"].start()

def test_after():
    assert os.listdir(TARGET) == []
    later["asks"].put(True)
    assert later["answers"].get(timeout=10) == ["inside"]
    later["asks"].put(False)
    later["thread"].join(10)
"""
    )
    before = where_am_i()
    result = pytester.runpytest("-p", "no:cacheprovider", "--mountns-mode=inprocess")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*LeftoverThreadWarning: mountns: the test left 1 thread(s) running in its "
            "namespace: Thread-*; what they do next is not isolated from the tests after it*"
        ]
    )
    assert where_am_i() == before


def test_nested_in_process_runs(pytester: pytest.Pytester) -> None:
    """An in-process test that runs pytest in-process: each level comes back to its own."""
    outer, inner = pytester.mkdir("outer"), pytester.mkdir("inner")
    pytester.makepyfile(
        f"""
import os, pytest

pytest_plugins = ["pytester"]

INNER_TEST = '''
import os, pytest

@pytest.mark.mountns({str(inner)!r})
def test_inner():
    assert os.listdir({str(outer)!r}) == ["outer-made"]
    open({str(inner / "inner-made")!r}, "w").close()
'''

@pytest.mark.mountns({str(outer)!r})
def test_outer(pytester):
    open({str(outer / "outer-made")!r}, "w").close()
    namespace = os.stat("/proc/thread-self/ns/mnt").st_ino
    pytester.makepyfile(INNER_TEST)
    pytester.runpytest("-p", "mountns", "-p", "no:cacheprovider", "--mountns-mode=inprocess"
                       ).assert_outcomes(passed=1)
    assert os.stat("/proc/thread-self/ns/mnt").st_ino == namespace
    assert os.listdir({str(outer)!r}) == ["outer-made"]
    assert os.listdir({str(inner)!r}) == []
"""
    )
    before = mount_table(), where_am_i()
    pytester.runpytest("-p", "no:cacheprovider", "--mountns-mode=inprocess").assert_outcomes(
        passed=1
    )
    assert (mount_table(), where_am_i()) == before
    assert os.listdir(outer) == os.listdir(inner) == []


def test_xdist_workers_isolate_in_their_own_thread(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xdist's workers have threads of their own; the test's thread goes in and out alone."""
    pytester.makeconftest(PLACE)
    pytester.makepyfile(
        """
import os, threading, pytest
from conftest import PYTEST_PID

@pytest.mark.parametrize("n", range(8))
def test_isolated(n, isolated_tmpfs):
    assert os.getpid() == PYTEST_PID
    assert len(os.listdir("/proc/self/task")) > 1  # execnet's own threads
    assert os.listdir(isolated_tmpfs) == []
    (isolated_tmpfs / "mine").write_text(str(n))
"""
    )
    temp = pytester.mkdir("temp")  # where the mount points go: not the /tmp other runs share
    monkeypatch.setenv("TMPDIR", str(temp))
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "xdist",
        "-n",
        "2",
        "--mountns-all",
        "--mountns-mode=inprocess",
    )
    result.assert_outcomes(passed=8)
    assert [path.name for path in temp.iterdir()] == []  # every mount point made was removed


def test_a_chrooted_pytest_gets_its_root_back(tmp_path: Path) -> None:
    """``setns`` moves the thread to the namespace's root; the way back re-enters pytest's."""
    root = tmp_path / "root"
    root.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_root.py").write_text(
        """
import os, pytest

@pytest.mark.mountns("/srv")
def test_isolated():
    pass

def test_root_is_still_the_chroot():
    assert os.path.exists("/mnt/only-in-the-chroot")
"""
    )
    # The chroot: / bound again at `root`, with a tmpfs on its /mnt that only it shows.
    inner = f"cd {project} && {shlex.quote(sys.executable)} -m pytest -p no:cacheprovider"
    script = (
        f"mount --rbind / {root} && mount --make-rprivate {root} && "
        f"mount -t tmpfs marker {root}/mnt && "
        f"touch {root}/mnt/only-in-the-chroot && "
        f"chroot {root} sh -c {shlex.quote(inner + ' --mountns-mode=inprocess')}"
    )
    done = run_in_shared_root(script, project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcomes(done.stdout) == {"passed": 2}, done.stdout


def test_wider_scopes_live_outside_and_python_state_is_shared(pytester: pytest.Pytester) -> None:
    """Wider fixtures are set up and torn down in pytest's namespace, the test's own inside.

    Unlike a forked child, an in-process test changes pytest's Python state for good.
    """
    log = pytester.path / "log.txt"
    pytester.makeconftest(
        f"""
import os, pytest

def record(event):
    with open({str(log)!r}, "a") as f:
        f.write(f"{{event}} {{os.stat('/proc/thread-self/ns/mnt').st_ino}}\\n")

@pytest.fixture(scope="session")
def session_value():
    record("session-setup")
    yield ["original"]
    record("session-teardown")

@pytest.fixture(scope="module")
def late_module_value():
    record("late-module-setup")
    yield
    record("late-module-teardown")

@pytest.fixture
def function_value(session_value):
    record("function-setup")
    yield
    record("function-teardown")
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_isolated_mutates(session_value, function_value, request):
    session_value.append("changed in the test")
    request.getfixturevalue("late_module_value")

def test_plain_sees_it(session_value, late_module_value):
    assert session_value == ["original", "changed in the test"]
"""
    )
    pytester.runpytest("--mountns-mode=inprocess").assert_outcomes(passed=2)
    events = [line.split() for line in log.read_text().splitlines()]
    own = str(os.stat("/proc/thread-self/ns/mnt").st_ino)
    assert [(event, namespace == own) for event, namespace in events] == [
        ("session-setup", True),
        ("function-setup", False),
        ("late-module-setup", False),  # first asked for inside the test
        ("function-teardown", False),
        ("late-module-teardown", True),  # once, with its module, outside
        ("session-teardown", True),
    ]


def test_a_ctrl_c_on_the_way_back_is_raised_once_the_thread_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Injected: Ctrl-C lands just before ``setns``. Tried in a throwaway thread, which
    takes any namespace it is stranded in with it when it ends."""
    real_setns = _linux.setns
    calls = []

    def interrupted_once(fd: int, flags: _linux.CloneFlag) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_setns(fd, flags)

    monkeypatch.setattr(_linux, "setns", interrupted_once)
    seen: list[object] = []

    def attempt() -> None:
        before = os.stat("/proc/thread-self/ns/mnt").st_ino
        origin = _thread_namespace.enter()
        try:
            _thread_namespace.leave(origin)
        except KeyboardInterrupt:
            seen.append("interrupt")
        seen.append(os.stat("/proc/thread-self/ns/mnt").st_ino == before)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    _thread_namespace.settle()
    assert seen == ["interrupt", True]
    assert len(calls) == 2


def test_credentials_a_test_changed_are_restored_on_the_way_back(
    pytester: pytest.Pytester,
) -> None:
    """``setns`` back needs CAP_SYS_ADMIN: a test that set its euid aside gets it back after."""
    pytester.makepyfile(
        """
import os, pytest

@pytest.mark.mountns("/srv")
def test_drops_root_for_a_while():
    os.setegid(65534)
    os.seteuid(65534)
    assert os.geteuid() == 65534

def test_after():
    assert (os.geteuid(), os.getegid()) == (0, 0)
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--mountns-mode=inprocess", "--junitxml=junit.xml", timeout=60
    )
    assert result.parseoutcomes() == {"passed": 2}
    assert (pytester.path / "junit.xml").exists()


def test_a_test_that_gives_up_root_for_good_ends_the_run_before_anything_is_written(
    pytester: pytest.Pytester,
) -> None:
    """Without a way back, whatever pytest did next would land in the test's namespace."""
    pytester.makepyfile(
        """
import os, pytest

@pytest.fixture(scope="session")
def server():
    yield
    print("SESSION TEARDOWN RAN")

@pytest.mark.mountns("/srv")
def test_drops_root(server):
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)

def test_never_runs():
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", "--mountns-mode=inprocess", "--junitxml=junit.xml",
        timeout=60,
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stderr.fnmatch_lines(
        [
            "mountns: *test_drops_root: this thread could not return to pytest's mount "
            "namespace: *Operation not permitted*. The run stops here, before anything more is "
            "written*fork=True.)"
        ]
    )
    output = result.stdout.str() + result.stderr.str()
    assert "test_never_runs" not in output and "SESSION TEARDOWN RAN" not in output
    assert " passed" not in output  # no summary that could disagree with the exit code
    assert not (pytester.path / "junit.xml").exists()
