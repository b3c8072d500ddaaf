"""What both runners share, and neither knows of forking or of mounts.

An ``Isolation`` is what the plugin prepares for one test: what runs at its
setup, what brings the thread back, what checks the host once it is over. An
``Attempt`` gathers the test's reports; ``finish`` tears down the wider scopes
and hands on the one teardown report; ``end_leftovers`` ends what a test left
running in pytest's process.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from . import _adapters, _internals, _phases, _processes


@dataclass(frozen=True)
class Isolation:
    enter: Callable[[], None]
    """Runs first thing in the test's setup (in the child, or in pytest's thread)."""
    check: Callable[[], str | None]
    """Runs here once the child is gone: a reason to fail the test, or None."""
    timeout: float | None = None
    begin: Callable[[], None] = lambda: None
    """Runs here just before the child starts the test."""
    release: Callable[[], None] = lambda: None
    """Runs here if the child never starts (a spare thrown away)."""
    leave: Callable[[], None] = lambda: None
    """In-process only: runs after the test's own teardown, whatever happened, to come back."""
    ready: Callable[[], None] = lambda: None
    """Forked only: runs in the child as soon as it starts, so a spare does it while the
    test before it runs; only what cannot depend on what that test changes."""
    still_valid: Callable[[], bool] = lambda: True
    """Runs here before a spare child, prepared while the test before it ran, goes:
    whether what was decided then (targets, sources) still holds now that it ended."""


class LeftoverProcessWarning(pytest.PytestWarning):
    """An isolated test left processes running; pytest-mountns killed them."""


def leftover_warning(killed: list[str]) -> LeftoverProcessWarning:
    return LeftoverProcessWarning(
        f"mountns: killed {len(killed)} process(es) the test left running: " + "; ".join(killed)
    )


Prepare = Callable[[str | None], Isolation]
"""Called once the wider scopes are set up, with pytest's basetemp if the test uses it."""


class Attempt:
    """One run of an item's protocol: its reports in order, logged as they come if ``log``.

    pytest's own protocol logs them; a plugin that reruns (pytest-rerunfailures)
    asks for them unlogged, and logs each once it has decided what it was.
    """

    def __init__(self, item: pytest.Item, log: bool) -> None:
        self.item = item
        self.log = log
        self.received: dict[str, pytest.TestReport] = {}
        self.reports: list[pytest.TestReport] = []

    def deliver(self, report: pytest.TestReport) -> None:
        """A phase's report; the teardown waits to be merged with the wider scopes' half."""
        self.received[report.when] = report
        if report.when != "teardown":
            self.hand_on(report)

    def hand_on(self, report: pytest.TestReport) -> None:
        self.reports.append(report)
        if self.log:
            self.item.ihook.pytest_runtest_logreport(report=report)


def finish(
    attempt: Attempt,
    nextitem: pytest.Item | None,
    isolation: Isolation,
    problems: Sequence[str] = (),
    stopping: Callable[[], None] = lambda: None,
) -> None:
    """Check the host, tear down the scopes that end here, hand on the one teardown report.

    ``problems`` (a warning that this process's filters made an error, say)
    fail the teardown too. ``stopping`` runs first if the session stops here
    (the fork runner's spare holds copies of what the teardown unmounts).
    """
    item = attempt.item
    leak = isolation.check()  # before the parent's teardown, which may unmount what it mounted
    if item.session.shouldfail or item.session.shouldstop:
        nextitem = None
        stopping()
    reraise = _phases.reraised(item.config)
    parent_half = (
        None
        if _adapters.reruns(item)  # it needs them again
        else _internals.teardown_wider_scopes(item, nextitem, reraise)
    )
    teardown = merge_teardown(attempt.received["teardown"], parent_half)
    for problem in [leak, *problems]:
        if problem is not None:
            now = time.time()
            failed = make_report(item, "teardown", "failed", problem, [], now, now)
            teardown = merge_teardown(teardown, failed)
    attempt.hand_on(teardown)


_kept_key = pytest.StashKey[set[int]]()


def kept_children(config: pytest.Config) -> set[int]:
    """The children of pytest's process that are the plugin's own, not a test's leftovers:
    forked children that reported everything and are exiting, the spare forked for the next
    test. The fork runner keeps it up to date."""
    return config.stash.setdefault(_kept_key, set())


def end_leftovers(item: pytest.Item, since: int) -> list[str]:
    """Kill what a test left running here: pytest's children (adopted, as a subreaper,
    or its own, in-process) outside pytest's namespace, and everything below them.

    Walked again until nothing new is found, as orphans keep coming here while
    a process that forks itself over and over is ended. The forked children that
    reported everything and are exiting are not leftovers, nor is the spare forked
    for the next test, in its namespace already; ``since`` (clock ticks since boot,
    the test's start) tells the adopted dead, which are reaped here. Returns the
    warning as a problem where this process's filters made it an error.
    """
    view = _processes.view()
    ours = kept_children(item.config)
    if ours.issuperset(view.children()):
        return []  # the common case, found with one read: no child but the plugin's own
    own_namespace = view.mount_namespace(os.getpid())

    def outside(pid: int) -> bool:
        try:
            namespace = view.mount_namespace(pid)
        except PermissionError:  # not the test's: pytest's process may look at all of those
            return False  # (root, or owner of their user namespace); a non-dumpable agent
        if namespace is None:  # dead or on its way out since the walk's list was read: what
            return view.started(pid) >= since  # it had is on its way here, so walk again
        return namespace != own_namespace

    def orphans() -> list[int]:
        roots = [pid for pid in view.children() if pid not in ours and outside(pid)]
        return roots + [below for root in roots for below in view.descendants(root)]

    reap_dead = functools.partial(view.reap_orphans, since=since, keep=ours)
    described = list(view.end(orphans, reap_dead).values())
    if not described:
        return []
    reap_dead()  # what died as its tree was killed
    problem = _phases.warn_or_fail(item, leftover_warning(described))
    return [problem] if problem is not None else []


def make_report(
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


def merge_teardown(child: pytest.TestReport, parent: pytest.TestReport | None) -> pytest.TestReport:
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
