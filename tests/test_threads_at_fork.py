"""Forking a test out of a pytest process that has threads: the child lacks them; say so.

A session-scoped executor whose worker thread started in pytest's process (an
unisolated test used it first) is the common case: pytest-asyncio's session
loop and ``asyncio.to_thread`` work the same way.
"""

from __future__ import annotations

import pytest

from tests._helpers import outcomes

EXECUTOR = """
import concurrent.futures, pytest

@pytest.fixture(scope="session")
def executor():
    with concurrent.futures.ThreadPoolExecutor(thread_name_prefix="app-worker") as pool:
        yield pool

def test_not_isolated_starts_the_worker(executor):
    assert executor.submit(lambda: 1).result() == 1
"""


def test_the_first_fork_with_threads_warns_once_and_names_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        EXECUTOR
        + """
@pytest.mark.mountns
def test_isolated_one(executor):
    pass

@pytest.mark.mountns
def test_isolated_two(executor):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert outcomes(result.stdout.str()) == {"passed": 3, "warnings": 1}
    result.stdout.fnmatch_lines(
        ["*ThreadsAtForkWarning: mountns: pytest's process has 1 other thread(s)*app-worker_0*"]
    )


def test_warnings_as_errors_fail_the_test_that_would_fork(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        EXECUTOR
        + """
@pytest.mark.mountns
def test_isolated(executor):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    assert outcomes(result.stdout.str()) == {"passed": 1, "errors": 1}
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_isolated*", "ThreadsAtForkWarning: *app-worker_0*"]
    )


def test_a_test_that_waits_on_a_missing_thread_times_out_and_the_report_says_why(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        EXECUTOR
        + """
@pytest.mark.mountns(timeout=2)
def test_waits_on_the_worker(executor):
    executor.submit(lambda: 1).result()
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert outcomes(result.stdout.str()) == {"passed": 1, "failed": 1, "warnings": 1}
    result.stdout.fnmatch_lines(
        ["*timed out after 2s (pytest's process has threads the child lacks: app-worker_0*"]
    )


def test_in_process_the_same_work_runs(pytester: pytest.Pytester) -> None:
    """No fork, no missing thread (the worker is outside the namespace: docs/compatibility.md)."""
    pytester.makepyfile(
        EXECUTOR
        + """
@pytest.mark.mountns(fork=False)
def test_waits_on_the_worker(executor):
    assert executor.submit(lambda: 2).result() == 2
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert outcomes(result.stdout.str()) == {"passed": 2}


@pytest.mark.parametrize(
    ("action", "expected"),
    [("ignore", {"passed": 2}), ("error", {"passed": 1, "errors": 1})],
)
def test_filters_name_the_warning_by_its_public_name(
    pytester: pytest.Pytester, action: str, expected: dict[str, int]
) -> None:
    pytester.makepyfile(
        EXECUTOR
        + """
@pytest.mark.mountns
def test_isolated(executor):
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", f"{action}::pytest_mountns.ThreadsAtForkWarning"
    )
    assert outcomes(result.stdout.str()) == expected
