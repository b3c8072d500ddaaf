"""Pytest's side of the fork: fork a child per test, log what it sends, report its end.

It knows nothing of mounts: the plugin's ``prepare`` returns an ``Isolation``,
what the child runs before the test's setup and what to check once it is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from . import (
    _adapters,
    _channel,
    _child,
    _forking,
    _frames,
    _internals,
    _linux,
    _output,
    _phases,
    _processes,
)


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


class ThreadsAtForkWarning(pytest.PytestWarning):
    """pytest's process had other threads when it forked isolated tests; the children lack them."""


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


def run_isolated(
    attempt: Attempt,
    nextitem: pytest.Item | None,
    prepare: Prepare,
    prepare_next: Prepare | None = None,
) -> BaseException | None:
    """Run the item's setup, call and teardown in a forked child; its reports come here.

    When a collector or wider-scoped fixture fails to set up, ``prepare``
    raises, or no child can be forked (a test lowered ``RLIMIT_NPROC``, say),
    nothing of the test runs and the error is returned: the caller hands the
    item to pytest's own protocol, which reports it as it would without
    isolation. ``prepare_next``, for the next test if it is isolated too,
    lets a spare child be forked for it while this one runs.
    """
    item = attempt.item
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
    problem = _threads_at_fork(item)
    if problem is not None:  # -W error made the warning an error
        if spare is not None:
            _forking.discard(spare)
        else:
            isolation.release()
        return pytest.fail.Exception(problem, pytrace=False)
    # An alarm armed for this test (pytest-timeout's signal method) must ring in
    # the child, where the test runs: timers do not cross fork, so move it there.
    alarm = signal.setitimer(signal.ITIMER_REAL, 0)
    started = time.monotonic()
    try:
        with _processes.waitable_children(), _linux.subreaper():
            isolation.begin()
            try:
                child = _start(item, nextitem, hooks, isolation, alarm, spare, basetemp, prepare)
            except OSError as error:
                isolation.release()
                return pytest.fail.Exception(
                    f"mountns: could not fork the isolated test: {error}", pytrace=False
                )
            if prepare_next is not None and nextitem is not None:
                try:
                    _forking.fork_spare(item, nextitem, hooks, prepare_next, basetemp)
                except OSError:
                    pass  # no spare, then: it forks when its turn comes
                except BaseException as error:  # Ctrl-C while forking it
                    _abandon(item, child, error)
                    raise
            _collect(attempt, nextitem, child, isolation)
    finally:
        left = alarm[0] - (time.monotonic() - started)
        if alarm[0] > 0 and left > 0:  # it rang in the child if it was due
            signal.setitimer(signal.ITIMER_REAL, left, alarm[1])
    return None


def _start(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    hooks: _child.ChildHooks,
    isolation: Isolation,
    alarm: tuple[float, float],
    spare: _forking.Spare | None,
    basetemp: str | None,
    prepare: Prepare,
) -> _forking.Forked:
    """Tell the spare forked for this test to go, or fork a child now."""
    if spare is not None:
        handover = _forking.handover(item, alarm, spare.filters)
        if handover is not None and _forking.go(item.config, spare.child, handover):
            return dataclasses.replace(spare.child, started=_processes.boot_ticks())
        _forking.discard(spare)
        isolation = prepare(basetemp)
    return _forking.fork(item, nextitem, hooks, isolation, alarm)


_threads_told_key = pytest.StashKey[bool]()


def _threads_at_fork(item: pytest.Item) -> str | None:
    """Once per session, if pytest's process has other threads: which, and what follows."""
    if item.config.stash.get(_threads_told_key, False):
        return None
    threads = _processes.other_threads()
    if not threads:
        return None
    item.config.stash[_threads_told_key] = True
    return _phases.warn_or_fail(
        item,
        ThreadsAtForkWarning(
            f"mountns: pytest's process has {len(threads)} other thread(s) as it forks "
            f"isolated tests: {', '.join(threads)}. A forked child has none of them: test "
            "code that waits on one (an executor's worker, a session-scoped event loop's "
            "asyncio.to_thread) hangs. In-process isolation (fork=False), or a "
            "function-scoped loop or executor, avoids it."
        ),
    )


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
    """Once per session: register the child's hooks (they do nothing in pytest's process)."""
    if _child_hooks_key not in config.stash:
        hooks = _child.ChildHooks(config)
        config.pluginmanager.register(hooks, "mountns-child")
        config.stash[_child_hooks_key] = hooks
    return config.stash[_child_hooks_key]


def _collect(
    attempt: Attempt, nextitem: pytest.Item | None, child: _forking.Forked, isolation: Isolation
) -> None:
    """Take the child's reports as they come, then reap it and fill in what it never sent."""
    item = attempt.item
    problems: list[str] = []
    ending: tuple[int, bytes] | None = None
    started = time.time()
    deadline = time.monotonic() + isolation.timeout if isolation.timeout else None
    channel = _channel.Channel(child.pid, child.reports, child.stacks)
    try:
        for kind, payload in channel.frames(deadline):
            if kind == _frames.REPORT:
                attempt.deliver(_frames.load_report(item.config, payload))
            elif kind == _frames.LOGGED:
                report = _frames.load_report(item.config, payload)
                item.ihook.pytest_runtest_logreport(report=report)
            elif kind == _frames.WARNINGS:
                _frames.replay_warnings(payload)
            elif kind == _frames.JUNIT:
                _internals.apply_junit_changes(item.config, item, json.loads(payload))
            elif kind == _frames.PROBLEM:
                problems.append(payload.decode(errors="replace"))
            elif kind == _frames.OUTPUT:
                output = _output.unpickled(payload)
                _adapters.take_aggregated(item, output)
                _output.deliver(item, output)
            elif kind == _frames.ITEM_STATE:
                _adapters.restore_item_state(item, payload)
            else:
                ending = (kind, payload)
                if kind == _frames.DONE:
                    break
    except (TimeoutError, _channel.ChildStopped) as stop:
        if isinstance(stop, TimeoutError):
            what = f"timed out after {isolation.timeout:g}s"
            threads = _processes.other_threads()
            if threads:
                what += (
                    f" (pytest's process has threads the child lacks: {', '.join(threads)}; "
                    "waiting on one of them never ends)"
                )
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, _child.STACKS_SIGNAL)
            stacks = channel.stacks(settle=1.0)
        else:
            name = _channel.signal_name(stop.signum)
            what = f"was stopped by {name} and stayed stopped for {_channel.STOP_GRACE:g}s"
            stacks = channel.stacks()
        problems += _end_tree(item, child)
        _report_death(attempt, what, stacks, started)
    except BaseException as error:
        _abandon(item, child, error)
        raise
    else:
        if ending == (_frames.DONE, b""):
            # It sent everything and ended what the test left; let it exit on the
            # other core while this one goes on, and reap it later.
            _exiting_children(item.config).append(child.pid)
        else:
            problems += _after_an_abnormal_end(attempt, child, ending, channel, started)
    finally:
        channel.close()
    finish(attempt, nextitem, isolation, problems)


def _after_an_abnormal_end(
    attempt: Attempt,
    child: _forking.Forked,
    ending: tuple[int, bytes] | None,
    channel: _channel.Channel,
    started: float,
) -> list[str]:
    """Reap the child, end what it left, and hand on an exit or Ctrl-C, or report its death.

    Also for a child that reported everything but could not see what the test
    left (it covered ``/proc``): its orphans come here once it is gone.
    """
    status = _processes.wait_for(child.pid)
    problems = end_leftovers(attempt.item, child.started)
    if ending is not None and ending[0] == _frames.DONE:
        return problems
    if ending is not None and ending[0] in (_frames.EXIT, _frames.INTERRUPT):
        _forking.discard_spare(attempt.item.config)  # the session ends: no next test
    if ending is not None and ending[0] == _frames.EXIT:
        reason, returncode = json.loads(ending[1])
        pytest.exit(reason, returncode)
    if ending is not None and ending[0] == _frames.INTERRUPT:
        raise KeyboardInterrupt
    detail = ending[1].decode(errors="replace") if ending is not None else ""
    detail += channel.stacks()  # what faulthandler wrote at a crash
    _report_death(attempt, _describe(status, detail), detail, started)
    return problems


def finish(
    attempt: Attempt,
    nextitem: pytest.Item | None,
    isolation: Isolation,
    problems: Sequence[str] = (),
) -> None:
    """Check the host, tear down the scopes that end here, hand on the one teardown report.

    ``problems`` (a warning that this process's filters made an error, say)
    fail the teardown too.
    """
    item = attempt.item
    leak = isolation.check()  # before the parent's teardown, which may unmount what it mounted
    if item.session.shouldfail or item.session.shouldstop:
        nextitem = None
        _forking.discard_spare(item.config)  # it holds copies of what the teardown unmounts
    reraise = _phases.reraised(item.config)
    parent_half = (
        None
        if _adapters.reruns(item)  # it needs them again
        else _internals.teardown_wider_scopes(item, nextitem, reraise)
    )
    teardown = _merge_teardown(attempt.received["teardown"], parent_half)
    for problem in [leak, *problems]:
        if problem is not None:
            now = time.time()
            failed = _make_report(item, "teardown", "failed", problem, [], now, now)
            teardown = _merge_teardown(teardown, failed)
    attempt.hand_on(teardown)


def _abandon(item: pytest.Item, child: _forking.Forked, error: BaseException) -> None:
    """The session ends while the child runs: on Ctrl-C it tears down first; else it is killed."""
    _forking.discard_spare(item.config)
    reaped = False
    try:
        if isinstance(error, KeyboardInterrupt):
            _interrupt(child.pid)  # its function fixtures tear down, as pytest's would at exit
            reaped = True
    finally:
        if reaped:
            end_leftovers(item, child.started)
        else:
            _end_tree(item, child)


def _interrupt(pid: int) -> None:
    """Hand a Ctrl-C on to the child and wait while it tears down, as pytest would.

    If the terminal sent it to the child too, the child ignores the second one.
    Another Ctrl-C here interrupts the wait, and the caller kills the child.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    _processes.wait_for(pid)


def _end_tree(item: pytest.Item, child: _forking.Forked) -> list[str]:
    """Kill the child and reap it; what it left running is adopted here and ended."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    _processes.wait_for(child.pid)
    return end_leftovers(item, child.started)


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
    ours = set(_exiting_children(item.config)) | _forking.spare_pids(item.config)
    if ours.issuperset(view.children()):
        return []  # the common case, found with one read: no child but the plugin's own
    own_namespace = view.mount_namespace(os.getpid())

    def orphans() -> list[int]:
        roots = [
            pid
            for pid in view.children()
            if pid not in ours and view.mount_namespace(pid) not in (own_namespace, None)
        ]
        return roots + [below for root in roots for below in view.descendants(root)]

    reap_dead = functools.partial(view.reap_orphans, since=since, keep=ours)
    described = list(view.end(orphans, reap_dead).values())
    if not described:
        return []
    reap_dead()  # what died as its tree was killed
    problem = _phases.warn_or_fail(item, _child.leftover_warning(described))
    return [problem] if problem is not None else []


def _report_death(attempt: Attempt, what: str, detail: str, started: float) -> None:
    """Fail the phase the child was in; a child that vanished never passes."""
    item, received = attempt.item, attempt.received
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
    attempt.deliver(_make_report(item, phase, "failed", message, sections, started, now))
    if phase != "teardown":
        attempt.deliver(_make_report(item, "teardown", "passed", None, [], now, now))


def _describe(status: int | None, detail: str) -> str:
    if status is None:
        return (
            "process ended, and its exit status was lost (SIGCHLD is ignored in pytest's process)"
        )
    if status == _frames.CHANNEL_LOST:
        return "process lost its report pipe (did the test close descriptors it did not open?)"
    if status < 0:
        return f"process was killed by {_channel.signal_name(-status)} (signal {-status})"
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
