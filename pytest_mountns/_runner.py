"""Pytest's side of the fork: fork a child per test, log what it sends, report its end.

It knows nothing of mounts: the plugin's ``prepare`` returns an ``Isolation``,
what the child runs before the test's setup and what to check once it is gone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import time

import pytest

from . import (
    _adapters,
    _channel,
    _child,
    _forking,
    _frames,
    _internals,
    _isolation,
    _linux,
    _output,
    _phases,
    _processes,
)


class ThreadsAtForkWarning(pytest.PytestWarning):
    """pytest's process had other threads when it forked isolated tests; the children lack them."""


def run_isolated(
    attempt: _isolation.Attempt,
    nextitem: pytest.Item | None,
    prepare: _isolation.Prepare,
    prepare_next: _isolation.Prepare | None = None,
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
    try:
        basetemp = _internals.setup_wider_scopes(item)
    except _internals.SETUP_FAILURES as error:
        return error
    problem = _threads_at_fork(item)
    if problem is not None:  # -W error made the warning an error
        _forking.discard_spare(config)
        return pytest.fail.Exception(problem, pytrace=False)
    hooks = _child_hooks(config)
    reap_exited(config)
    # An alarm armed for this test (pytest-timeout's signal method) must ring in
    # the child, where the test runs: timers do not cross fork, so move it there.
    alarm = signal.setitimer(signal.ITIMER_REAL, 0)
    started = time.monotonic()
    try:
        with _processes.waitable_children(), _linux.subreaper():
            try:
                child, isolation = _forking.start(item, nextitem, hooks, prepare, basetemp, alarm)
            except _forking.CouldNotFork as error:
                return pytest.fail.Exception(
                    f"mountns: could not fork the isolated test: {error}", pytrace=False
                )
            except _internals.SETUP_FAILURES as error:
                return error
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


def reap_exited(config: pytest.Config, block: bool = False) -> None:
    """Reap the children that reported everything and were left to exit on their own
    (and a spare that died meanwhile: its discard finds it reaped)."""
    kept = _isolation.kept_children(config)
    for pid in sorted(kept):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, 0 if block else os.WNOHANG)[0] == 0:
                continue
        kept.discard(pid)


def _child_hooks(config: pytest.Config) -> _child.ChildHooks:
    """Once per session: register the child's hooks (they do nothing in pytest's process)."""
    if _child_hooks_key not in config.stash:
        hooks = _child.ChildHooks(config)
        config.pluginmanager.register(hooks, "mountns-child")
        config.stash[_child_hooks_key] = hooks
    return config.stash[_child_hooks_key]


def _collect(
    attempt: _isolation.Attempt,
    nextitem: pytest.Item | None,
    child: _forking.Forked,
    isolation: _isolation.Isolation,
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
            _isolation.kept_children(item.config).add(child.pid)
        else:
            problems += _after_an_abnormal_end(attempt, child, ending, channel, started)
    finally:
        channel.close()
    stopping = functools.partial(_forking.discard_spare, item.config)
    _isolation.finish(attempt, nextitem, isolation, problems, stopping)


def _after_an_abnormal_end(
    attempt: _isolation.Attempt,
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
    problems = _isolation.end_leftovers(attempt.item, child.started)
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
            _isolation.end_leftovers(item, child.started)
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
    return _isolation.end_leftovers(item, child.started)


def _report_death(attempt: _isolation.Attempt, what: str, detail: str, started: float) -> None:
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
    attempt.deliver(_isolation.make_report(item, phase, "failed", message, sections, started, now))
    if phase != "teardown":
        attempt.deliver(_isolation.make_report(item, "teardown", "passed", None, [], now, now))


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
