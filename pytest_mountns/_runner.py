"""Pytest's side of the fork: fork a child per test, log what it sends, report its end.

It knows nothing of mounts: the plugin's ``prepare`` returns an ``Isolation``,
what the child runs before the test's setup and what to check once it is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from . import _child, _forking, _frames, _internals, _linux, _phases, _processes


@dataclass(frozen=True)
class Isolation:
    enter: Callable[[], None]
    """Runs in the child before the test's setup."""
    check: Callable[[], str | None]
    """Runs here once the child is gone: a reason to fail the test, or None."""
    timeout: float | None = None
    begin: Callable[[], None] = lambda: None
    """Runs here just before the child starts the test."""
    release: Callable[[], None] = lambda: None
    """Runs here if the child never starts (a spare thrown away)."""
    leave: Callable[[], None] = lambda: None
    """In-process only: runs after the test's own teardown, whatever happened, to come back."""
    still_valid: Callable[[], bool] = lambda: True
    """Runs here before a spare child, prepared while the test before it ran, goes:
    whether what was decided then (targets, sources) still holds now that it ended."""


Prepare = Callable[[str | None], Isolation]
"""Called once the wider scopes are set up, with pytest's basetemp if the test uses it."""


def run_isolated(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    prepare: Prepare,
    prepare_next: Prepare | None = None,
) -> BaseException | None:
    """Run the item's setup, call and teardown in a forked child and log its reports here.

    When a collector or wider-scoped fixture fails to set up, or ``prepare``
    raises, nothing of the test runs and the error is returned: the caller
    hands the item to pytest's own protocol, which reports it as it would
    without isolation. ``prepare_next``, for the next test if it is isolated
    too, lets a spare child be forked for it while this one runs.
    """
    config = item.config
    spare = _forking.take_spare(config)
    try:
        basetemp = _internals.setup_wider_scopes(item)
        if spare is not None and not (
            _forking.fits(spare, item, nextitem) and spare.isolation.still_valid()
        ):
            _forking.discard(spare)
            spare = None
        isolation = spare.isolation if spare is not None else prepare(basetemp)
    except _internals.SETUP_FAILURES as error:
        if spare is not None:
            _forking.discard(spare)
        return error
    hooks = _child_hooks(config)
    reap_exited(config)
    own_children = set(_processes.children()) - ({spare.child.pid} if spare else set())
    # An alarm armed for this test (pytest-timeout's signal method) must ring in
    # the child, where the test runs: timers do not cross fork, so move it there.
    alarm = signal.setitimer(signal.ITIMER_REAL, 0)
    started = time.monotonic()
    isolation.begin()
    handover = _forking.handover(item, alarm, spare.filters) if spare is not None else None
    if spare is not None and handover is None:
        _forking.discard(spare)
        spare, isolation = None, prepare(basetemp)
    if spare is not None and handover is not None:
        child = spare.child
        _forking.go(child, handover)
    else:
        child = _forking.fork(item, nextitem, hooks, isolation, alarm)
    if prepare_next is not None and nextitem is not None:
        _forking.fork_spare(item, nextitem, hooks, prepare_next, basetemp)
    try:
        _collect(item, nextitem, child.pid, child.reports, child.stacks, isolation, own_children)
    finally:
        os.close(child.stacks)
        left = alarm[0] - (time.monotonic() - started)
        if alarm[0] > 0 and left > 0:  # it rang in the child if it was due
            signal.setitimer(signal.ITIMER_REAL, left, alarm[1])
    return None


_child_hooks_key = pytest.StashKey[_child.ChildHooks]()
_exiting_key = pytest.StashKey[list[int]]()


def _exiting_children(config: pytest.Config) -> list[int]:
    if _exiting_key not in config.stash:
        config.stash[_exiting_key] = []
    return config.stash[_exiting_key]


def reap_exited(config: pytest.Config, block: bool = False) -> None:
    """Reap the children that reported everything and were left to exit on their own."""
    exiting = _exiting_children(config)
    for pid in list(exiting):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, 0 if block else os.WNOHANG)[0] == 0:
                continue
        exiting.remove(pid)


def _child_hooks(config: pytest.Config) -> _child.ChildHooks:
    """Once per session: register the child's hooks, and become a subreaper.

    As a subreaper, pytest's process adopts what a dead child left behind.
    """
    if _child_hooks_key not in config.stash:
        hooks = _child.ChildHooks(config)
        config.pluginmanager.register(hooks, "mountns-child")
        config.stash[_child_hooks_key] = hooks
        _linux.become_subreaper()
    return config.stash[_child_hooks_key]


def _collect(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    pid: int,
    fd: int,
    stacks_fd: int,
    isolation: Isolation,
    own_children: set[int],
) -> None:
    """Log the child's reports as they come, then reap it and fill in what it never sent."""
    received: dict[str, pytest.TestReport] = {}
    ending: tuple[int, bytes] | None = None
    started = time.time()
    deadline = time.monotonic() + isolation.timeout if isolation.timeout else None
    try:
        for kind, payload in _frames.read_frames(fd, pid, deadline):
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
            elif kind == _frames.JUNIT:
                _internals.apply_junit_changes(item.config, item, json.loads(payload))
            else:
                ending = (kind, payload)
                if kind == _frames.DONE:
                    break
    except TimeoutError:
        stacks = _ask_for_stacks(pid, stacks_fd)
        _kill_tree(pid)
        _end_leftovers(item, own_children)
        detail = f"timed out after {isolation.timeout:g}s"
        _report_death(item, received, detail, stacks, started)
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            _interrupt(pid)  # its function fixtures tear down, as pytest's would at exit
        _kill_tree(pid)
        _end_leftovers(item, own_children)
        raise
    else:
        if ending is not None and ending[0] == _frames.DONE:
            # It sent everything and ended what the test left; let it exit on the
            # other core while this one goes on, and reap it later.
            _exiting_children(item.config).append(pid)
        else:
            _after_an_abnormal_end(item, pid, ending, stacks_fd, received, own_children, started)
    finally:
        os.close(fd)
    finish(item, nextitem, received, isolation)


def _after_an_abnormal_end(
    item: pytest.Item,
    pid: int,
    ending: tuple[int, bytes] | None,
    stacks_fd: int,
    received: dict[str, pytest.TestReport],
    own_children: set[int],
    started: float,
) -> None:
    """Reap the child, end what it left, and hand on an exit or Ctrl-C, or report its death."""
    status = _reap(pid)
    _end_leftovers(item, own_children)
    if ending is not None and ending[0] == _frames.EXIT:
        reason, returncode = json.loads(ending[1])
        pytest.exit(reason, returncode)
    if ending is not None and ending[0] == _frames.INTERRUPT:
        raise KeyboardInterrupt
    detail = ending[1].decode(errors="replace") if ending is not None else ""
    detail += _read_available(stacks_fd)  # what faulthandler wrote at a crash
    _report_death(item, received, _describe(status, detail), detail, started)


def finish(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    received: dict[str, pytest.TestReport],
    isolation: Isolation,
) -> None:
    """Check the host, tear down the scopes that end here, log the one teardown report."""
    problem = isolation.check()  # before the parent's teardown, which may unmount what it mounted
    if item.session.shouldfail or item.session.shouldstop:
        nextitem = None
    reraise = _phases.reraised(item.config)
    parent_half = _internals.teardown_wider_scopes(item, nextitem, reraise)
    teardown = _merge_teardown(received["teardown"], parent_half)
    if problem is not None:
        now = time.time()
        teardown = _merge_teardown(
            teardown, _make_report(item, "teardown", "failed", problem, [], now, now)
        )
    item.ihook.pytest_runtest_logreport(report=teardown)


def _ask_for_stacks(pid: int, stacks_fd: int) -> str:
    """Have the child's faulthandler write every thread's stack; wait a moment for it."""
    try:
        os.kill(pid, _child.STACKS_SIGNAL)
    except ProcessLookupError:
        return ""
    text = ""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        chunk = _read_available(stacks_fd)
        if chunk:
            text += chunk
            deadline = min(deadline, time.monotonic() + 0.1)
        time.sleep(0.01)
    return text


def _read_available(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _interrupt(pid: int, grace: float = 3.0) -> None:
    """Hand a Ctrl-C on to the child and give it a moment to tear down and leave."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] != 0:
                return
        time.sleep(0.01)


def _kill_tree(pid: int) -> None:
    """SIGKILL the child and every descendant it has, then reap the child."""
    _processes.kill([*_processes.descendants(pid), pid])
    with contextlib.suppress(ChildProcessError):  # reaped already, after a Ctrl-C
        _reap(pid)


def _end_leftovers(item: pytest.Item, own_children: set[int]) -> None:
    """Kill what a dead child left behind: adopted here, and not in pytest's namespace."""
    own_namespace = _processes.mount_namespace(os.getpid())
    leftovers = [
        child
        for child in _processes.children()
        if child not in own_children
        and _processes.mount_namespace(child) not in (own_namespace, None)  # None: already gone
    ]
    if not leftovers:
        return
    trees = leftovers + [d for child in leftovers for d in _processes.descendants(child)]
    killed = _processes.kill(trees)
    _processes.reap(leftovers)
    _child.warn_about_leftovers(item, killed)


def _report_death(
    item: pytest.Item,
    received: dict[str, pytest.TestReport],
    what: str,
    detail: str,
    started: float,
) -> None:
    """Fail the phase the child was in; a child that vanished never passes."""
    setup = received.get("setup")
    if setup is None:
        phase = "setup"
    elif setup.passed and "call" not in received and not item.config.option.setuponly:
        phase = "call"
    else:
        phase = "teardown"
    message = f"mountns: the isolated test {what} during {phase}"
    if detail:
        message += f"\n{detail}"
    out, err = _internals.leftover_output(item)
    sections = [
        (f"Captured {key} {phase}", text)
        for key, text in (("stdout", out), ("stderr", err))
        if text
    ]
    now = time.time()
    death = _make_report(item, phase, "failed", message, sections, started, now)
    received[phase] = death
    if phase != "teardown":  # the teardown report is logged once merged with the parent's
        item.ihook.pytest_runtest_logreport(report=death)
        received["teardown"] = _make_report(item, "teardown", "passed", None, [], now, now)


def _describe(status: int, detail: str) -> str:
    if status == _frames.CHANNEL_LOST:
        return "process lost its report pipe (did the test close descriptors it did not open?)"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"process was killed by {name} (signal {-status})"
    if detail.startswith("Traceback"):
        return "process failed inside pytest-mountns"
    return f"process exited with status {status} without reporting"


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
                ("mountns: also failed in pytest's process", str(parent.longrepr))
            )
        else:
            child.outcome = "failed"
            child.longrepr = parent.longrepr
    return child


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
