"""Pytest's side of the fork: fork a child per test, log what it sends, report its death.

It knows nothing of mounts: the plugin hands it a ``prepare`` callable that
returns what the child runs before the test's setup.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable

import pytest

from . import _child, _frames, _internals, _linux

Prepare = Callable[[str | None], Callable[[], None]]
"""Called once the wider scopes are set up, with pytest's basetemp if the test
uses it; returns what the child calls before the test's setup."""

_OUTCOMES = (Exception, pytest.skip.Exception, pytest.fail.Exception)


def run_isolated(
    item: pytest.Item, nextitem: pytest.Item | None, prepare: Prepare
) -> BaseException | None:
    """Run the item's whole protocol in a forked child and log its reports here.

    When a collector or wider-scoped fixture fails to set up, or ``prepare``
    raises, nothing of the test runs and the error is returned: the caller
    hands the item to pytest's own protocol, which reports it as it would
    without isolation.
    """
    try:
        enter = prepare(_internals.setup_wider_scopes(item))
    except _OUTCOMES as error:
        return error
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    sys.stdout.flush()
    sys.stderr.flush()
    _linux.flush_c_stdio()
    read_fd, write_fd = os.pipe()
    parent_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child.main(item, nextitem, enter, write_fd, parent_pid)
    os.close(write_fd)
    _collect(item, nextitem, pid, read_fd)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return None


def _collect(item: pytest.Item, nextitem: pytest.Item | None, pid: int, fd: int) -> None:
    """Log the child's reports as they come, then reap it and fill in what it never sent."""
    received: dict[str, pytest.TestReport] = {}
    ending: tuple[int, bytes] | None = None
    started = time.time()
    try:
        for kind, payload in _frames.read_frames(fd, pid):
            if kind == _frames.REPORT:
                report = _frames.load_report(item.config, payload)
                received[report.when] = report
                if report.when != "teardown":  # logged once merged with the parent's half
                    item.ihook.pytest_runtest_logreport(report=report)
            elif kind == _frames.LOGGED:
                report = _frames.load_report(item.config, payload)
                item.ihook.pytest_runtest_logreport(report=report)
            elif kind == _frames.WARNINGS:
                _frames.replay_warnings(payload)
            else:
                ending = (kind, payload)
                if kind == _frames.DONE:
                    break
        status = _reap(pid)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(fd)
    if ending is not None and ending[0] == _frames.EXIT:
        reason, returncode = json.loads(ending[1])
        pytest.exit(reason, returncode)
    if ending is not None and ending[0] == _frames.INTERRUPT:
        raise KeyboardInterrupt
    if ending is None or ending[0] != _frames.DONE:
        detail = ending[1].decode(errors="replace") if ending is not None else ""
        _report_crash(item, received, status, detail, started)
    if item.session.shouldfail or item.session.shouldstop:
        nextitem = None
    reraise = _child.reraised(item.config)
    parent_half = _internals.teardown_wider_scopes(item, nextitem, reraise)
    item.ihook.pytest_runtest_logreport(report=_merge_teardown(received["teardown"], parent_half))


def _report_crash(
    item: pytest.Item,
    received: dict[str, pytest.TestReport],
    status: int,
    detail: str,
    started: float,
) -> None:
    """Fail the phase the child died in; a child that vanished never passes."""
    setup = received.get("setup")
    if setup is None:
        phase = "setup"
    elif setup.passed and "call" not in received and not item.config.option.setuponly:
        phase = "call"
    else:
        phase = "teardown"
    message = f"mountns: the isolated test process {_describe(status, detail)} during {phase}"
    if detail:
        message += f"\n{detail}"
    out, err = _internals.leftover_output(item)
    sections = [
        (f"Captured {key} {phase}", text)
        for key, text in (("stdout", out), ("stderr", err))
        if text
    ]
    now = time.time()
    crash = _make_report(item, phase, "failed", message, sections, started, now)
    received[phase] = crash
    if phase != "teardown":  # the teardown report is logged once merged with the parent's
        item.ihook.pytest_runtest_logreport(report=crash)
        received["teardown"] = _make_report(item, "teardown", "passed", None, [], now, now)


def _describe(status: int, detail: str) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name} (signal {-status})"
    if detail:
        return "failed inside pytest-mountns"
    return f"exited with status {status} without reporting"


def _make_report(
    item: pytest.Item,
    when: str,
    outcome: str,
    longrepr: str | None,
    sections: list[tuple[str, str]],
    start: float,
    stop: float,
) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid=item.nodeid,
        location=item.location,
        keywords=dict.fromkeys(item.keywords, 1),
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,
        when=when,  # type: ignore[arg-type]
        sections=sections,
        duration=stop - start,
        start=start,
        stop=stop,
        user_properties=item.user_properties,
    )


def _merge_teardown(
    child: pytest.TestReport, parent: pytest.TestReport | None
) -> pytest.TestReport:
    """One teardown report, as pytest gives, from the child's and the parent's halves."""
    if parent is None:
        return child
    titles = [title for title, _ in child.sections]
    for title, content in parent.sections:
        if title.endswith(" teardown") and title in titles:
            index = titles.index(title)
            child.sections[index] = (title, child.sections[index][1] + content)
        elif title.endswith(" teardown"):
            child.sections.append((title, content))
    child.duration += parent.duration
    child.stop = parent.stop
    if parent.failed:
        if child.failed:
            child.sections.append(
                ("mountns: error tearing down wider scopes", str(parent.longrepr))
            )
        else:
            child.outcome = "failed"
            child.longrepr = parent.longrepr
    return child


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
