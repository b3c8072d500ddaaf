"""Setup, call and teardown of one item, as pytest runs them, for either runner.

Public pytest API (``CallInfo``, the makereport and interact hooks), and,
through ``_internals``, pytest's ``--setup-show`` line and its rule for when the
debugger starts. The runner decides where each report goes (down a pipe, or to
pytest's log), and what the isolation's ``enter`` is; ``EnterAtSetup`` runs it
first in setup.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest

from . import _internals


def run_phases(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    deliver: Callable[[pytest.TestReport], None],
) -> None:
    """pytest's three phases, each report handed to ``deliver`` as soon as it is made.

    Delivered before the debugger starts (``--pdb``), as pytest logs it: quitting
    the debugger must not lose the failure.
    """
    ihook = item.ihook
    setup = _call_and_report(item, "setup", lambda: ihook.pytest_runtest_setup(item=item), deliver)
    if setup.passed:
        if item.config.getoption("setupshow", False):
            _internals.show_test_item(item)
        if not item.config.option.setuponly:
            call = lambda: ihook.pytest_runtest_call(item=item)  # noqa: E731
            _call_and_report(item, "call", call, deliver)
    teardown = lambda: ihook.pytest_runtest_teardown(item=item, nextitem=nextitem)  # noqa: E731
    _call_and_report(item, "teardown", teardown, deliver)


def warn_at(item: pytest.Item, warning: pytest.PytestWarning) -> None:
    """A warning in the run's summary, located at the test, as pytest shows a test's own."""
    path, line, _ = item.location
    warnings.warn_explicit(warning, type(warning), path, (line or 0) + 1)


def warn_or_fail(item: pytest.Item, warning: pytest.PytestWarning) -> str | None:
    """``warn_at``, from pytest's process, outside the test's phases: where the filters
    make the warning an error (``-W error``), the error, to fail the test with."""
    try:
        warn_at(item, warning)
    except Warning as error:
        return f"{type(error).__name__}: {error}"
    return None


def reraised(config: pytest.Config) -> tuple[type[BaseException], ...]:
    """What ends the session instead of failing the test, as in pytest's own protocol."""
    if config.getoption("usepdb", False):
        return (pytest.exit.Exception,)
    return (pytest.exit.Exception, KeyboardInterrupt)


def _call_and_report(
    item: pytest.Item,
    when: str,
    run: Callable[[], None],
    deliver: Callable[[pytest.TestReport], None],
) -> pytest.TestReport:
    call = pytest.CallInfo.from_call(run, when=when, reraise=reraised(item.config))  # type: ignore[arg-type]
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    deliver(report)
    if _internals.check_interactive_exception(call, report):
        item.ihook.pytest_exception_interact(node=item, call=call, report=report)
    return report


class EnterAtSetup:
    """A plugin that enters the isolation first thing in the test's setup, when armed.

    Inside pytest's capture and log wrappers, so a failure to mount is a
    setup error like any. Registered once per session; armed per test.
    """

    def __init__(self) -> None:
        self._enter: Callable[[], None] | None = None

    def arm(self, enter: Callable[[], None] | None) -> None:
        self._enter = enter

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self) -> None:
        if self._enter is None:
            return
        try:
            self._enter()
            return
        except OSError as error:
            message = f"mountns: could not set up the isolated namespace: {error}"
        pytest.fail(message, pytrace=False)
