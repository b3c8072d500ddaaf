"""Whatever a test or the host does, pytest goes on: no INTERNALERROR, no hang, nothing left.

Each inner run is a subprocess with a bound: a hang fails the test here
instead of hanging the suite. Inner runs load pytest and the plugin only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pytest_mountns import _mountinfo
from tests._helpers import children, ctrl_c_works
from tests.conftest import Differential

BOUND = 60


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    """The inner pytest, in a subprocess, with a bound."""
    pytester.makepyfile(textwrap.dedent(body))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args, timeout=BOUND)


def assert_no_internal_error(result: pytest.RunResult) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output, output
    assert result.ret in (0, 1), output


def processes_with(marker: str) -> list[str]:
    """Processes whose command line holds ``marker``: what a run left behind."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read()
                with open(f"/proc/{entry}/stat", "rb") as f:
                    zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
            except OSError:
                continue
            if marker.encode() in command and not zombie:
                found.append(f"{entry} {command!r}")
    return found


def wait_until_none_with(marker: str, seconds: float = 10) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.both_modes
def test_a_mount_point_that_is_not_utf8_breaks_nothing(pytester: pytest.Pytester) -> None:
    """mountinfo is bytes: a USB stick's Latin-1 name must not crash the header or a test."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.mountns
        def test_isolated(mountns):
            assert any(m.fstype == "tmpfs" for m in mountns.mounts())

        def test_plain():
            pass
        """
    )
    odd = os.fsencode(str(pytester.path)) + b"/caf\xe9"
    os.mkdir(odd)
    python = sys.executable
    script = (
        f'mount -t tmpfs latin1 "$ODD" && {python} -m pytest -p no:cacheprovider -v '
        f"&& {python} -m pytest_mountns"
    )
    completed = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        cwd=pytester.path,
        env={**os.environ, "ODD": os.fsdecode(odd)},
        capture_output=True,
        timeout=BOUND,
    )  # fmt: skip
    output = completed.stdout.decode(errors="replace")
    assert completed.returncode == 0, output + completed.stderr.decode(errors="replace")
    assert "mountns: isolation available" in output
    assert "2 passed" in output and "pytest-mountns" in output and "doctor" in output


def test_a_mount_point_that_is_not_utf8_is_shown_escaped() -> None:
    line = b"99 27 0:99 / /mnt/caf\xe9\\040x rw - tmpfs latin1 rw\n"
    entry = _mountinfo._parse(line)
    assert os.fsencode(entry.mountpoint) == b"/mnt/caf\xe9 x"
    assert _mountinfo._brief(line) == "/mnt/caf\\xe9 x (tmpfs from latin1, private)"


def test_warnings_as_errors_fail_the_test_not_the_session(pytester: pytest.Pytester) -> None:
    """The leftover warning pytest's process gives after a timeout is that test's failure."""
    result = run(
        pytester,
        """
        import subprocess, time, pytest

        @pytest.mark.mountns(timeout=1)
        def test_leaves_a_process_and_hangs():
            subprocess.Popen(["sleep", "600"])
            time.sleep(600)

        @pytest.mark.mountns
        def test_next():
            pass
        """,
        "-W", "error",
    )  # fmt: skip
    assert_no_internal_error(result)
    result.assert_outcomes(failed=1, passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*LeftoverProcessWarning: mountns: killed 1 process(es)*sleep 600*"]
    )


@pytest.mark.both_modes
def test_a_warning_a_test_lets_through_its_own_filters_is_recorded_not_raised(
    pytester: pytest.Pytester, differential: Differential
) -> None:
    """As without isolation: the test's own filter wins over ``-W error``."""
    pytester.makepyfile(
        """
        import warnings

        def test_lets_one_through():
            warnings.simplefilter("always")
            warnings.warn("let through", UserWarning)
        """
    )
    plain, _ = differential.run("-W", "error", subprocess=True)
    assert plain.parseoutcomes() == {"passed": 1, "warnings": 1}


@pytest.mark.both_modes
def test_an_ignored_sigchld_in_pytest_s_process_changes_nothing(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import os, signal, pytest

        def test_ignores_sigchld():
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)

        @pytest.mark.mountns(fork=True)
        def test_crashes():
            os.kill(os.getpid(), signal.SIGSEGV)

        @pytest.mark.mountns
        def test_sees_what_it_would_have_seen():
            assert signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN
        """,
        "-p", "no:faulthandler",
    )  # fmt: skip
    assert_no_internal_error(result)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*the isolated test process was killed by SIGSEGV (signal 11)*"])


def test_a_crash_with_more_tracebacks_than_a_pipe_holds_is_reported_as_the_crash(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import os, signal, threading, pytest

        def deep(depth, ready, release):
            if depth:
                return deep(depth - 1, ready, release)
            ready.release()
            release.wait()

        @pytest.mark.mountns
        def test_crashes_with_forty_deep_threads():
            ready, release = threading.Semaphore(0), threading.Event()
            for _ in range(40):
                threading.Thread(target=deep, args=(200, ready, release), daemon=True).start()
            for _ in range(40):
                ready.acquire()
            os.kill(os.getpid(), signal.SIGSEGV)

        @pytest.mark.mountns
        def test_next():
            pass
        """,
        "--mountns-timeout=30",
    )
    assert_no_internal_error(result)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*killed by SIGSEGV (signal 11) during call*", "*in deep*"])
    assert "timed out" not in result.stdout.str()


def test_a_test_that_stops_itself_fails_instead_of_hanging(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import os, signal, pytest

        @pytest.mark.mountns(fork=True)
        def test_stops():
            os.kill(os.getpid(), signal.SIGSTOP)

        @pytest.mark.mountns(fork=True)
        def test_stopped_and_continued_by_its_own_helper():
            helper = os.fork()
            if helper == 0:  # continues the test as soon as it is stopped
                import time
                def state():
                    with open(f"/proc/{os.getppid()}/stat") as f:
                        return f.read().rsplit(")", 1)[1].split()[0]
                while state() != "T":
                    time.sleep(0.001)
                os.kill(os.getppid(), signal.SIGCONT)
                os._exit(0)
            os.kill(os.getpid(), signal.SIGSTOP)
            os.waitpid(helper, 0)

        def test_next():
            pass
        """,
    )
    assert_no_internal_error(result)
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["*the isolated test was stopped by SIGSTOP and stayed stopped*"])


ESCAPES = """
import os, subprocess, sys, time, pytest

MARKER = {marker!r}
REFORK = (
    "import os, sys, time\\n"
    "open(sys.argv[2], 'w').close()\\n"
    "while True:\\n"
    "    if os.fork():\\n"
    "        os._exit(0)\\n"
    "    time.sleep(0.001)\\n"
)

def start_reforking(name):  # returns once it runs: there is a leftover to find, whatever the load
    started = os.path.abspath(name + ".started")
    subprocess.Popen([sys.executable, "-c", REFORK, MARKER, started])
    while not os.path.exists(started):
        time.sleep(0.01)

def daemon():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", MARKER])
        os._exit(0)

@pytest.mark.mountns
def test_hides_proc_and_leaves_a_daemon():
    subprocess.run(["mount", "-t", "tmpfs", "hidden", "/proc"], check=True)
    daemon()

@pytest.mark.mountns
def test_leaves_a_process_that_keeps_reforking():
    start_reforking("left")

@pytest.mark.mountns(timeout=5)
def test_reforks_and_times_out():
    start_reforking("timed-out")
    time.sleep(600)

@pytest.mark.mountns
def test_reforks_and_crashes():
    start_reforking("crashed")
    os._exit(3)
"""


def test_no_process_escapes_the_end_of_its_test(pytester: pytest.Pytester) -> None:
    marker = f"mountns-escape-{os.getpid()}-{time.monotonic_ns()}"
    result = run(pytester, ESCAPES.format(marker=marker))
    assert_no_internal_error(result)
    result.assert_outcomes(passed=2, failed=2, warnings=4)
    assert result.stdout.str().count("LeftoverProcessWarning") == 4
    assert wait_until_none_with(marker, seconds=1) == []


@pytest.mark.both_modes
def test_an_earlier_isolated_test_changes_nothing_for_the_tests_that_are_not(
    pytester: pytest.Pytester,
) -> None:
    """pytest's process adopts orphans only while it runs an isolated test (a subreaper)."""
    body = """
        import os, time, pytest

        @pytest.mark.mountns
        def test_isolated_first():
            pass

        def test_daemon_of_a_plain_test(tmp_path_factory):
            path = tmp_path_factory.getbasetemp() / "ppid"
            if os.fork() == 0:
                if os.fork() == 0:
                    time.sleep(0.3)  # its parent is gone: who adopted it?
                    path.write_text(str(os.getppid()))
                    os._exit(0)
                os._exit(0)
            os.wait()
            for _ in range(100):
                if path.exists() and path.read_text():
                    break
                time.sleep(0.05)
            assert int(path.read_text()) != os.getpid()
        """
    result = run(pytester, body)
    result.assert_outcomes(passed=2)


def test_no_descriptors_no_processes_the_test_gets_an_error_not_the_session(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import os, resource, signal, pytest

        HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

        def test_lowers_the_descriptor_limit_in_pytest_s_process():
            fds = len(os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (fds + 2, HARD))

        @pytest.mark.mountns
        def test_cannot_fork():
            pass

        def test_gives_them_back():
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, HARD))

        @pytest.mark.mountns
        def test_forks_again():
            pass
        """,
    )
    assert_no_internal_error(result)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*mountns: could not fork the isolated test: *Too many open files*"]
    )


def test_a_spare_killed_while_sigpipe_kills_is_replaced(pytester: pytest.Pytester) -> None:
    """pytest's process tells a child forked ahead to go through a pipe: a dead reader must
    not kill pytest where a test reset SIGPIPE to its default."""
    result = run(
        pytester,
        """
        import os, signal, time, pytest

        def test_resets_sigpipe():
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)

        @pytest.mark.mountns
        def test_kills_the_child_forked_for_the_next_test():
            parent = os.getppid()
            for _ in range(500):
                siblings = set()
                for task in os.listdir(f"/proc/{parent}/task"):
                    siblings.update(open(f"/proc/{parent}/task/{task}/children").read().split())
                siblings.discard(str(os.getpid()))
                if siblings:
                    for sibling in siblings:
                        os.kill(int(sibling), signal.SIGKILL)
                    for sibling in siblings:  # dead, not dying: its pipe is closed
                        while open(f"/proc/{sibling}/stat").read().split(")")[-1].split()[0] != "Z":
                            time.sleep(0.01)
                    return
                time.sleep(0.01)
            raise AssertionError("no child was forked ahead")

        @pytest.mark.mountns
        def test_runs_all_the_same():
            pass
        """,
    )
    assert_no_internal_error(result)
    result.assert_outcomes(passed=3)


@pytest.mark.both_modes
def test_what_a_test_changes_in_pytest_s_environment_errors_only_who_needs_it(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import os, tempfile, pytest

        def test_spoils_path_and_the_temporary_directory():
            os.environ["PATH"] = ""
            tempfile.tempdir = "/nonexistent/tmp"

        def test_uses_isolated_tmpfs(isolated_tmpfs):
            pass

        @pytest.mark.mountns
        def test_is_isolated_all_the_same():
            pass

        def test_puts_the_directory_back():
            tempfile.tempdir = None

        def test_uses_it_again(isolated_tmpfs):
            pass
        """,
    )
    assert_no_internal_error(result)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_uses_isolated_tmpfs*", "*/nonexistent/tmp*"]
    )


def test_in_process_survives_a_test_that_closes_every_descriptor(
    pytester: pytest.Pytester,
) -> None:
    """The way back finds pytest's namespace and root again through a thread that never left."""
    result = run(
        pytester,
        """
        import os, pytest

        @pytest.mark.mountns("/srv", fork=False)
        def test_closes_everything():
            os.closerange(3, 1024)

        @pytest.mark.mountns(fork=False)
        def test_after():
            assert os.path.exists("/srv")
        """,
        "-s", "-p", "no:faulthandler",
    )  # fmt: skip
    assert_no_internal_error(result)
    result.assert_outcomes(passed=2)


def where_each_waits(pid: int) -> str:
    """The processes below ``pid``: command line, state, and kernel stack (root reads it)."""
    lines = []
    pending = children(pid)
    while pending:
        current = pending.pop()
        pending += children(current)
        facts = []
        for name in ("cmdline", "stat", "wchan", "stack"):
            try:
                with open(f"/proc/{current}/{name}", "rb") as f:
                    facts.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError as error:
                facts.append(f"({name}: {error.strerror})")
        lines.append(f"-- {current}\n" + "\n".join(facts))
    return "\n".join(lines)


def test_ctrl_c_to_the_process_group_tears_the_test_down_once_and_completely(
    pytester: pytest.Pytester,
) -> None:
    started, done = pytester.path / "started", pytester.path / "torn-down"
    pytester.makepyfile(
        f"""
        import os, time, pytest

        @pytest.fixture
        def slow_teardown():
            yield
            for step in range(5):
                time.sleep(0.1)
                with open({str(done)!r}, "a") as f:
                    f.write(f"{{step}}\\n")

        @pytest.mark.mountns
        def test_waits(slow_teardown):
            open({str(started)!r}, "w").close()
            time.sleep(600)
        """
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    process = subprocess.Popen(
        command, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=ctrl_c_works,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + BOUND
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGINT)  # as the terminal does: to everyone in the group
        try:
            output, _ = process.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:  # where pytest's process waits: faulthandler says;
            below = where_each_waits(process.pid)  # and where the kernel holds its child
            os.kill(process.pid, signal.SIGABRT)
            output, _ = process.communicate(timeout=BOUND)
            pytest.fail(
                f"pytest did not end after Ctrl-C:\n{output.decode(errors='replace')}\n{below}"
            )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert done.read_text() == "0\n1\n2\n3\n4\n"


def test_the_copy_of_a_ctrl_c_that_lands_in_the_teardown_does_not_cut_it_short(
    pytester: pytest.Pytester,
) -> None:
    """The terminal's Ctrl-C reaches the child, and pytest's process forwards it too:
    that copy usually coalesces with the first, but may land during the teardown."""
    done = pytester.path / "torn-down"
    pytester.makepyfile(
        f"""
        import os, signal, pytest

        @pytest.fixture
        def teardown_hit_by_the_copy():
            yield
            os.kill(os.getpid(), signal.SIGINT)  # as the forwarded copy, late
            with open({str(done)!r}, "w") as f:
                f.write("complete")

        @pytest.mark.mountns
        def test_interrupted(teardown_hit_by_the_copy):
            os.kill(os.getpid(), signal.SIGINT)  # the terminal's
        """
    )
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=pytester.path, capture_output=True, text=True, timeout=BOUND,
        preexec_fn=ctrl_c_works,
    )  # fmt: skip
    assert completed.returncode == pytest.ExitCode.INTERRUPTED, completed.stdout
    assert done.read_text() == "complete"
