"""What a test emits besides its outcome reaches pytest as if there had been no fork.

The comparisons run the same inner project without the plugin and with
``--mountns-all`` (the ``differential`` fixture), which also checks that every
test of the second run was isolated, under the runner asked for.
"""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests._helpers import outcomes
from tests.conftest import Differential

pytestmark = pytest.mark.both_modes


def outcome_lines(result: pytest.RunResult) -> list[str]:
    """The run's output without the lines that differ by run (header, timings)."""
    return [
        re.sub(r"cache from [\d:]+ ago", "cache from ... ago", line)  # --sw, on pytest 9
        for line in result.outlines
        if not line.startswith(("mountns:", "rootdir", "platform", "plugins", "====="))
    ]


def test_subtests_and_unittest_subtests_fail_their_test(
    pytester: pytest.Pytester, differential: Differential
) -> None:
    pytester.makepyfile(
        """
import unittest, pytest

def test_with_subtests(request):
    try:
        subtests = request.getfixturevalue("subtests")
    except pytest.FixtureLookupError:
        pytest.skip("subtests is pytest 9's own")
    for i in range(3):
        with subtests.test(i=i):
            assert i != 1

class TestCase(unittest.TestCase):
    def test_sub(self):
        for i in range(2):
            with self.subTest(i=i):
                self.assertEqual(i, 0)
"""
    )
    plain, isolated = differential.run("-rA")
    assert outcome_lines(isolated) == outcome_lines(plain)
    assert isolated.ret == pytest.ExitCode.TESTS_FAILED


def test_warnings_reach_the_summary_and_honour_filters(
    pytester: pytest.Pytester, differential: Differential
) -> None:
    pytester.makepyfile(
        """
import warnings, pytest

class AppWarning(UserWarning):
    pass

def test_warns():
    warnings.warn("old api", DeprecationWarning)
    warnings.warn("app says", AppWarning)

@pytest.mark.filterwarnings("ignore::UserWarning")
def test_filtered():
    warnings.warn("not shown", UserWarning)

@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_turned_into_an_error():
    warnings.warn("now an error", RuntimeWarning)
"""
    )
    plain, isolated = differential.run("-W", "error::SyntaxWarning")
    assert outcome_lines(isolated) == outcome_lines(plain)
    isolated.assert_outcomes(passed=2, failed=1, warnings=2)
    isolated.stdout.fnmatch_lines(
        ["*RuntimeWarning: now an error", "*DeprecationWarning: old api", "*AppWarning: app says"]
    )
    assert "not shown" not in isolated.stdout.str()


def test_plugins_see_each_report_once_in_pytest_s_process(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import os
SEEN = []

def pytest_runtest_logreport(report):
    SEEN.append((report.when, report.outcome, os.getpid()))

def pytest_sessionfinish(session):
    with open("seen.txt", "w") as f:
        f.write(repr(SEEN))
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_isolated():
    pass
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    seen = eval((pytester.path / "seen.txt").read_text())
    assert seen == [(w, "passed", os.getpid()) for w in ("setup", "call", "teardown")]


def test_doctests_share_session_fixtures_set_up_once(pytester: pytest.Pytester) -> None:
    log = pytester.path / "log.txt"
    pytester.makeconftest(
        f"""
import os, pytest

@pytest.fixture(scope="session", autouse=True)
def session_resource():
    with open({str(log)!r}, "a") as f:
        f.write(f"setup {{os.getpid()}}\\n")
    yield
    with open({str(log)!r}, "a") as f:
        f.write(f"teardown {{os.getpid()}}\\n")
"""
    )
    pytester.makepyfile(
        mod='''
def double(x):
    """
    >>> double(2)
    4
    >>> import os; parent = f"/proc/{os.getppid()}/ns/mnt"
    >>> os.stat("/proc/self/ns/mnt").st_ino != os.stat(parent).st_ino
    True
    """
    return 2 * x

def triple(x):
    """
    >>> triple(2)
    6
    """
    return 3 * x
'''
    )
    pytester.runpytest("--doctest-modules", "--mountns-all").assert_outcomes(passed=2)
    assert log.read_text().split() == ["setup", str(os.getpid()), "teardown", str(os.getpid())]


def test_coverage_counts_lines_run_only_in_isolated_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        mylib="""
def only_isolated(x):
    y = x + 1
    return y * 2

def only_plain(x):
    return x - 1
""",
        test_cov="""
import pytest, mylib

@pytest.mark.mountns
def test_isolated():
    assert mylib.only_isolated(1) == 4

def test_plain():
    assert mylib.only_plain(1) == 0
""",
    )
    for extra in ([], ["-p", "xdist", "-n", "2"]):
        result = pytester.runpytest_subprocess(
            "-p", "pytest_cov", "--cov=mylib", "--cov-report=term-missing",
            "-p", "no:cacheprovider", *extra, timeout=120,
        )  # fmt: skip
        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(["mylib.py * 5 * 0 * 100%"])
    assert not list(pytester.path.glob(".coverage.*"))


def test_pytest_timeout_s_signal_method_rings_inside_the_child(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import time, pytest

@pytest.mark.mountns
@pytest.mark.timeout(0.5, method="signal")
def test_slow():
    time.sleep(30)

@pytest.mark.mountns
@pytest.mark.timeout(30, method="signal")
def test_quick():
    pass

def test_next():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "timeout", timeout=60)
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["*Failed: Timeout (>0.5s) from pytest-timeout.*"])


def test_junitxml_gets_properties_attributes_and_suite_properties(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_records(record_property, record_xml_attribute, record_testsuite_property):
    record_property("build", 42)
    record_xml_attribute("owner", "team-a")
    record_testsuite_property("arch", "x86_64")
    print("captured")
"""
    )

    def junit(*args: str) -> str:
        path = pytester.path / "junit.xml"
        pytester.runpytest(
            f"--junitxml={path}", "-o", "junit_family=xunit1", "-o", "junit_logging=all",
            "-W", "ignore::pytest.PytestExperimentalApiWarning", *args,
        )  # fmt: skip
        return re.sub(r'(time|timestamp|hostname)="[^"]*"', "", path.read_text())

    isolated = junit()
    assert isolated == junit("-p", "no:mountns", "-W", "ignore::pytest.PytestUnknownMarkWarning")
    for expected in ('name="build" value="42"', 'owner="team-a"', 'name="arch" value="x86_64"'):
        assert expected in isolated
    assert "captured" in isolated


@pytest.mark.fork_only  # in-process, the test imports its module into pytest's process itself
def test_a_property_of_the_test_s_own_class_arrives_as_its_repr_and_imports_nothing_here(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        thing="""
class Thing:
    def __repr__(self):
        return "Thing()"
""",
        test_records="""
import pytest

@pytest.mark.mountns
def test_records(record_property):
    import thing
    record_property("thing", thing.Thing())
    record_property("count", 3)
""",
    )
    pytester.makeconftest(
        """
import sys

def pytest_sessionfinish(session):
    with open("imported.txt", "w") as f:
        f.write(str("thing" in sys.modules))
"""
    )
    result = pytester.runpytest_subprocess("--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "imported.txt").read_text() == "False"
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="thing" value="Thing()"' in junit
    assert 'name="count" value="3"' in junit


def test_the_debugger_works_on_the_terminal_inside_the_child(pytester: pytest.Pytester) -> None:
    import pexpect  # the dev extra brings it

    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_fails():
    x = 41
    assert x + 1 == 43

@pytest.mark.mountns
def test_breakpoint():
    y = 7
    breakpoint()
    assert y == 7
"""
    )
    command = f"{sys.executable} -m pytest -p no:cacheprovider --pdb"
    child = pexpect.spawn(command, cwd=str(pytester.path), encoding="utf-8", timeout=30)
    child.expect(r"\(Pdb\)")  # post-mortem of test_fails, in its child
    child.sendline("p x + 1")
    child.expect("42")
    child.sendline("c")
    child.expect(r"\(Pdb\)")  # breakpoint() in test_breakpoint
    child.sendline("p y * 6")
    child.expect("42")
    child.sendline("c")
    child.expect(pexpect.EOF)
    assert outcomes(child.before) == {"failed": 1, "passed": 1}


@pytest.mark.parametrize(
    "runs",
    [[["-x"]], [["--maxfail=2"]], [[], ["--lf"]], [[], ["--ff"]], [["--sw"], ["--sw"]], [["-s"]]],
    ids=["x", "maxfail", "lf", "ff", "sw", "s"],
)
def test_session_control_matches_an_unisolated_run(
    pytester: pytest.Pytester, differential: Differential, runs: list[list[str]]
) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.fixture(scope="module")
def resource():
    print("module setup")
    yield
    print("module teardown")

@pytest.mark.parametrize("i", range(6))
def test_numbers(resource, i):
    print(f"running {i}")
    assert i % 3 != 1
"""
    )

    # -s writes to the real descriptors, which only a subprocess has
    runs = [["-rA", *args] for args in runs]
    plain, isolated = differential.sessions(runs, subprocess=["-rA", "-s"] in runs)
    for one, other in zip(plain, isolated, strict=True):
        assert outcome_lines(other) == outcome_lines(one)


def test_logs_caplog_and_durations_come_through(
    pytester: pytest.Pytester, differential: Differential
) -> None:
    pytester.makepyfile(
        """
import logging, time, pytest

def test_logs(caplog):
    logging.getLogger("app").warning("shown in the report")
    assert caplog.messages == ["shown in the report"]
    assert 0

def test_slow():
    time.sleep(0.5)
"""
    )
    plain, isolated = differential.run("-rA", "--durations=0", "--durations-min=0")
    timing = re.compile(r"(?m)^(\d+\.\d+)s (setup|call|teardown) +(\S+)$")

    def lines(result: pytest.RunResult) -> list[str]:
        """Without the durations, whose order follows the machine's load, and timings."""
        kept = (line for line in outcome_lines(result) if not timing.match(line))
        found = (re.sub(r"\d+\.\d+s", "N.NNs", line) for line in kept)
        return [re.sub(r" at 0x[0-9a-f]+", "", line) for line in found]

    def durations(result: pytest.RunResult) -> dict[tuple[str, str], float]:
        """Every phase of every test, as pytest timed it."""
        return {
            (when, test.rpartition("::")[2]): float(seconds)
            for seconds, when, test in timing.findall(result.stdout.str())
        }

    assert lines(isolated) == lines(plain)
    assert any("WARNING  app:" in line and "shown in the report" in line for line in lines(plain))
    assert (
        set(durations(isolated))
        == set(durations(plain))
        == {
            (when, test)
            for when in ("setup", "call", "teardown")
            for test in ("test_logs", "test_slow")
        }
    )
    assert durations(isolated)["call", "test_slow"] >= 0.5  # timed in the child, as it ran


def test_a_test_sees_what_pytest_s_process_changed_since_the_test_before(
    pytester: pytest.Pytester, differential: Differential
) -> None:
    """A child forked ahead (a spare) must not see pytest as it was one test earlier."""
    pytester.makepyfile(
        test_counts="""
import warnings, pytest

@pytest.fixture(scope="module")
def strict():
    warnings.simplefilter("error", UserWarning)  # during test_a's setup: test_a's alone
    yield

def test_a(strict):
    assert 0

def test_b(strict, request):
    assert request.session.testsfailed == 1
    warnings.warn("only a warning here", UserWarning)
"""
    )

    def compare() -> pytest.RunResult:
        plain, isolated = differential.run("-p", "no:cacheprovider")
        assert outcome_lines(isolated) == outcome_lines(plain)
        return isolated

    compare().assert_outcomes(failed=1, passed=1, warnings=1)
    pytester.makepyfile(
        test_hooks="""
SEEN = []

def test_c():
    pass

def test_d():
    assert SEEN == ["test_hooks.py::test_c"]
"""
    )
    pytester.makeconftest(
        """
def pytest_runtest_logreport(report):
    if report.when == "call" and report.nodeid.startswith("test_hooks"):
        import test_hooks
        test_hooks.SEEN.append(report.nodeid)
"""
    )
    compare().assert_outcomes(failed=1, passed=3, warnings=1)


def test_quitting_the_debugger_keeps_the_failure(pytester: pytest.Pytester) -> None:
    """The failure is logged before ``--pdb`` starts, as pytest does: quitting loses nothing."""
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_fails():
    assert 0
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--pdb", timeout=60)
    result.stdout.fnmatch_lines(["*Quitting debugger*", "*1 failed*"])


def test_setup_show_names_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.fixture
def prepared():
    yield

@pytest.mark.mountns
def test_shown(prepared):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--setup-show", timeout=60)
    result.stdout.fnmatch_lines(
        [
            "*SETUP    F prepared*",
            "*test_setup_show_names_the_test.py::test_shown (fixtures used: *prepared*)*",
            "*TEARDOWN F prepared*",
        ]
    )


SUBTESTS = """
import pytest

def test_with_subtests(subtests):
    for i in range(3):
        with subtests.test(i=i):
            assert i != 1

def test_second(subtests):
    with subtests.test(msg="one"):
        pass
"""


@pytest.mark.skipif(int(pytest.__version__.split(".")[0]) < 9, reason="subtests are pytest 9's")
def test_subtests_count_and_print_once_on_a_terminal_and_under_xdist(
    pytester: pytest.Pytester, differential: Differential
) -> None:
    """The child's own reporting of the reports plugins log there stays silent."""
    import pexpect  # the dev extra brings it

    pytester.makepyfile(SUBTESTS)

    def on_a_terminal(*args: str) -> list[str]:
        command = f"{sys.executable} -m pytest -p no:cacheprovider {' '.join(args)}"
        child = pexpect.spawn(command, cwd=str(pytester.path), encoding="utf-8", timeout=60)
        child.expect(pexpect.EOF)
        text = re.sub(r"\x1b\[[0-9;]*m", "", child.before)
        return [line for line in text.splitlines() if line.startswith("test_") or " in " in line]

    plain = on_a_terminal("-p", "no:mountns", "-o", "markers=mountns")
    isolated = on_a_terminal("--mountns-all")
    assert [re.sub(r" in [\d.]+s", "", line) for line in isolated] == [
        re.sub(r" in [\d.]+s", "", line) for line in plain
    ]
    plain_run, _ = differential.run("-p", "xdist", "-n", "2", subprocess=True)  # counts equal
    assert plain_run.parseoutcomes() == {"failed": 2, "passed": 1}


def test_the_debugger_starts_where_pytest_s_would(
    pytester: pytest.Pytester, differential: Differential
) -> None:
    """pytest 9 does not debug a unittest.SkipTest (pytest 8 does): as plain, whichever.

    The inner pytest's stdin is closed: the debugger quits at once, ending the run."""
    pytester.makepyfile(
        """
import unittest

def test_skips_the_unittest_way():
    raise unittest.SkipTest("not here")

def test_fails():
    assert 0
"""
    )
    # Without the unittest plugin, which would turn SkipTest into pytest's skip first.
    plain, isolated = differential.run("--pdb", "-p", "no:unittest", subprocess=True)
    assert outcomes(isolated.stdout.str()) == outcomes(plain.stdout.str())
    entered = [result.stdout.str().count("entering PDB") for result in (plain, isolated)]
    assert entered[0] == entered[1] >= 1
