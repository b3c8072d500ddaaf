"""``pytest_mountns.output``: data from an isolated test reaches pytest's process."""

from __future__ import annotations

import pytest

from tests._helpers import outcomes

pytestmark = pytest.mark.both_modes

AGGREGATOR = """
import os, pytest, pytest_mountns

RESULTS = []

@pytest.fixture
def measure(request):
    data = pytest_mountns.output(request.node)
    yield data
    data["pid"] = os.getpid()

def pytest_mountns_output(item, output):
    RESULTS.append((item.name, output["value"], output["pid"] == os.getpid()))

def pytest_terminal_summary(terminalreporter):
    for name, value, same_process in sorted(RESULTS):
        terminalreporter.write_line(f"result {name} {value!r} same-process={same_process}")
"""


def test_a_plugin_gets_what_each_isolated_test_sent(
    pytester: pytest.Pytester, runner_mode: str
) -> None:
    pytester.makeconftest(AGGREGATOR)
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_one(measure):
    measure["value"] = {"rounds": [1, 2, 3]}

@pytest.mark.mountns
def test_two(measure):
    measure["value"] = "two"

@pytest.mark.mountns
def test_sends_nothing():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert outcomes(result.stdout.str()) == {"passed": 3}
    same = runner_mode == "inprocess"  # a forked child's pid is not pytest's
    result.stdout.fnmatch_lines(
        [
            f"result test_one {{'rounds': [1, 2, 3]}} same-process={same}",
            f"result test_two 'two' same-process={same}",
        ]
    )
    assert "test_sends_nothing" not in result.stdout.str()


def test_a_value_that_does_not_pickle_fails_the_teardown_not_the_session(
    pytester: pytest.Pytester, runner_mode: str
) -> None:
    pytester.makeconftest(AGGREGATOR)
    pytester.makepyfile(
        """
import threading, pytest

@pytest.mark.mountns
def test_sends_a_lock(measure):
    measure["value"] = threading.Lock()

@pytest.mark.mountns
def test_after(measure):
    measure["value"] = "fine"
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    if runner_mode == "inprocess":  # the dict itself: nothing to pickle
        assert outcomes(result.stdout.str()) == {"passed": 2}
    else:
        assert outcomes(result.stdout.str()) == {"passed": 2, "errors": 1}
        result.stdout.fnmatch_lines(
            [
                "*ERROR at teardown of test_sends_a_lock*",
                "mountns: pytest_mountns.output(item)['value'] cannot be sent to pytest's "
                "process: TypeError: cannot pickle '_thread.lock' object",
            ]
        )
    result.stdout.fnmatch_lines(["result test_after 'fine' *"])
