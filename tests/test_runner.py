"""The fork-and-pipe runner: crashes, session control and large reports."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys

import pytest

from tests._helpers import outcomes, run_in_shared_root
from tests.conftest import Differential

pytestmark = pytest.mark.both_modes


def test_outcomes_match_an_unisolated_run(
    pytester: pytest.Pytester, differential: Differential
) -> None:
    pytester.makepyfile(
        """
import sys, pytest

@pytest.fixture
def broken_setup():
    raise ValueError("setup boom")

@pytest.fixture
def broken_teardown():
    yield
    raise ValueError("teardown boom")

def test_pass():
    print("to stdout"); print("to stderr", file=sys.stderr)
def test_fail():
    assert [1, 2, 3] == [1, 2, 4]
def test_skip():
    pytest.skip("because")
@pytest.mark.skip(reason="marked")
def test_skip_mark(): pass
@pytest.mark.xfail(reason="known")
def test_xfail(): assert 0
@pytest.mark.xfail(strict=True)
def test_xpass_strict(): pass
def test_setup_error(broken_setup): pass
def test_teardown_error(broken_teardown): pass
@pytest.mark.parametrize("x", [1, 2])
def test_param(x): assert x == 1
"""
    )

    def normalized(result: pytest.RunResult, junit: str) -> tuple[list[str], str]:
        lines = [
            line
            for line in result.outlines
            if not line.startswith(("mountns:", "-----", "=====", "rootdir", "platform", "plugins"))
        ]
        xml = (pytester.path / junit).read_text()
        for attribute in ("time", "timestamp", "hostname"):
            xml = re.sub(rf'{attribute}="[^"]*"', "", xml)
        return lines, xml

    [plain, _], [_, isolated] = differential.sessions(
        [["-rA", "--junitxml=plain.xml", "-o", "junit_logging=all"],
         ["-rA", "--junitxml=isolated.xml", "-o", "junit_logging=all"]]
    )  # fmt: skip
    plain_lines, plain_xml = normalized(plain, "plain.xml")
    isolated_lines, isolated_xml = normalized(isolated, "isolated.xml")
    assert isolated_lines == [line.replace("plain.xml", "isolated.xml") for line in plain_lines]
    assert isolated_xml == plain_xml
    assert "to stderr" in isolated_xml and "assert [1, 2, 3] == [1, 2, 4]" in isolated_xml
    assert plain.parseoutcomes() == {
        "failed": 3, "passed": 3, "skipped": 2, "xfailed": 1, "errors": 2,
    }  # fmt: skip


@pytest.mark.fork_only(reason="a crash kills only a forked child")
@pytest.mark.parametrize(
    ("body", "description"),
    [
        ("os.kill(os.getpid(), signal.SIGSEGV)", "was killed by SIGSEGV (signal 11) during call"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "was killed by SIGKILL (signal 9) during call"),
        ("os._exit(3)", "exited with status 3 without reporting during call"),
        ("os._exit(0)", "exited with status 0 without reporting during call"),
    ],
)
def test_a_dead_child_fails_its_phase_and_keeps_its_output(
    pytester: pytest.Pytester, body: str, description: str
) -> None:
    pytester.makepyfile(
        f"""
import os, signal, sys, pytest

@pytest.mark.mountns
def test_dies():
    print("last words on stdout")
    print("last words on stderr", file=sys.stderr)
    {body}

def test_next():
    pass
"""
    )
    result = pytester.runpytest("-p", "no:faulthandler")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            f"mountns: the isolated test process {description}",
            "*Captured stdout call*",
            "last words on stdout",
            "*Captured stderr call*",
            "last words on stderr",
        ]
    )


@pytest.mark.fork_only(reason="a crash kills only a forked child")
@pytest.mark.parametrize("phase", ["setup", "teardown"])
def test_a_child_dying_in_a_fixture_errors_that_phase(
    pytester: pytest.Pytester, phase: str
) -> None:
    before, after = ("os._exit(4)", "") if phase == "setup" else ("", "os._exit(4)")
    pytester.makepyfile(
        f"""
import os, pytest

@pytest.fixture
def fixture():
    {before or "pass"}
    yield
    {after or "pass"}

@pytest.mark.mountns
def test_it(fixture):
    pass
"""
    )
    result = pytester.runpytest()
    outcomes = {"setup": {"errors": 1}, "teardown": {"passed": 1, "errors": 1}}[phase]
    result.assert_outcomes(**outcomes)
    result.stdout.fnmatch_lines([f"*exited with status 4 without reporting during {phase}"])


def test_pytest_exit_in_the_child_ends_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_stops():
    pytest.exit("enough", returncode=3)

def test_never_runs():
    raise AssertionError("ran after pytest.exit")
"""
    )
    result = pytester.runpytest_subprocess(timeout=60)
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*Exit: enough*"])
    assert "test_never_runs" not in result.stdout.str()


def test_keyboard_interrupt_in_the_child_interrupts_the_session(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_interrupted():
    raise KeyboardInterrupt

def test_never_runs():
    raise AssertionError("ran after Ctrl-C")
"""
    )
    result = pytester.runpytest_subprocess(timeout=60)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    assert "ran after Ctrl-C" not in result.stdout.str()


@pytest.mark.fork_only(reason="the cap is the pipe's; in-process output is pytest's own")
def test_ten_megabytes_of_output_and_diff_do_not_hang(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import sys, pytest

@pytest.mark.mountns
def test_loud():
    sys.stdout.write("o" * 10_000_000)
    sys.stderr.write("e" * 20_000_000)
    assert "a" * 5_000_000 == "b" * 5_000_000

@pytest.mark.mountns
def test_after():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-q", timeout=120)
    result.assert_outcomes(failed=1, passed=1)
    output = result.stdout.str()
    assert output.count("o" * 1000) == 10_000  # all of it: under the 16 MiB a section keeps
    assert "[pytest-mountns: 3222784 more characters not kept]" in output  # 20 MB of stderr


@pytest.mark.fork_only(reason="a process the test forks is pytest itself in-process")
def test_only_the_child_reports_not_a_process_it_forked(pytester: pytest.Pytester) -> None:
    """The grandchild returns into the plugin's loop and would report a pass; the
    child's own failure, after it, is the test's."""
    pytester.makepyfile(
        """
import os, pytest

@pytest.mark.mountns
def test_forks_then_fails_itself():
    if os.fork() == 0:
        return  # the grandchild returns into the plugin's loop, which must stay silent
    os.wait()
    assert False, "the child's own failure"
"""
    )
    reports = pytester.inline_run().getreports("pytest_runtest_logreport")
    assert [(r.when, r.outcome) for r in reports] == [
        ("setup", "passed"),
        ("call", "failed"),
        ("teardown", "passed"),
    ]
    assert "the child's own failure" in str(reports[1].longrepr)


@pytest.mark.fork_only(reason="a crash kills only a forked child")
def test_a_crash_is_reported_while_a_grandchild_still_holds_the_pipe(
    pytester: pytest.Pytester,
) -> None:
    pidfile = pytester.path / "grandchild.pid"
    pytester.makepyfile(
        f"""
import os, signal, time, pytest

@pytest.mark.mountns
def test_forks_then_dies():
    grandchild = os.fork()
    if grandchild == 0:  # keeps the report pipe's write end open
        time.sleep(60)
        os._exit(0)
    with open({str(pidfile)!r}, "w") as f:
        f.write(str(grandchild))
    os.kill(os.getpid(), signal.SIGKILL)
"""
    )
    try:
        result = pytester.runpytest_subprocess(timeout=60)  # a hang fails here
        result.assert_outcomes(failed=1)
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.fork_only(reason="children forked ahead are the fork runner's")
def test_no_child_holds_a_session_mount_when_the_session_stops_early(
    pytester: pytest.Pytester,
) -> None:
    """With ``-x``, the session fixtures end after the failure: the child forked ahead
    for the next test must not keep a copy of what they unmount (a loop device or a
    FUSE mount would stay busy)."""
    mountpoint = pytester.mkdir("mnt")
    holders = pytester.path / "holders.txt"
    pytester.makepyfile(
        f"""
import os, subprocess, pytest

MNT = {str(mountpoint)!r}

def children():
    found = []
    for task in os.listdir("/proc/self/task"):
        found += open(f"/proc/self/task/{{task}}/children").read().split()
    return found

def holds(pid):
    try:
        return f" {{MNT}} " in open(f"/proc/{{pid}}/mountinfo").read()
    except OSError:  # exiting: it holds nothing any more
        return False

@pytest.fixture(scope="session")
def mounted():
    subprocess.run(["mount", "-t", "tmpfs", "none", MNT], check=True)
    yield
    subprocess.run(["umount", MNT], check=True)
    held = [pid for pid in children() if holds(pid)]
    with open({str(holders)!r}, "w") as f:
        f.write(repr(held))

@pytest.mark.mountns
def test_fails(mounted):
    assert 0

@pytest.mark.mountns
def test_next(mounted):
    pass
"""
    )
    command = f"{sys.executable} -m pytest -p no:cacheprovider -x"
    result = run_in_shared_root(command, cwd=pytester.path)
    assert outcomes(result.stdout) == {"failed": 1}, result.stdout + result.stderr
    assert holders.read_text() == "[]"
