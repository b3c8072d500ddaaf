"""Forking a test's child: at once, or ahead of time as a spare that waits for its go.

A spare is forked while the test before it runs, so the fork leaves the
critical path; it is used only if pytest's state is the one it was forked
from, and takes over what may still have changed (``_handover``). ``start``
gives the test its child, one way or the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import os
import pickle
import signal
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from . import _child, _internals, _linux, _mountinfo, _processes
from ._isolation import Isolation, Prepare, kept_children


@dataclass(frozen=True)
class Forked:
    """A forked child and pytest's ends of its pipes."""

    pid: int
    reports: int
    stacks: int
    go: int
    """The write end of the pipe a spare waits on; -1 for a child that started at once."""
    started: int
    """When its test started, in clock ticks since boot: what died here later and was
    not forked here is an orphan the test left (``_processes.reap_orphans``)."""


@dataclass(frozen=True)
class Spare:
    """A child forked ahead, while the test before it ran, waiting to be told to go.

    It is valid only if pytest's state is the one it was forked from: the
    same collectors set up, the same fixture values, in the same context.
    """

    item: pytest.Item
    nextitem: pytest.Item | None
    isolation: Isolation
    child: Forked
    state: _internals.State
    filters: Sequence[object]
    """The warning filters it was forked with."""
    alarm_handler: object
    """The SIGALRM handler it was forked with: pytest-timeout's, made for the test before
    with that test's timeout, cannot be handed over; a new one means forking afresh."""


class CouldNotFork(Exception):
    """No child could be forked (out of processes or descriptors): nothing of the test ran."""


def start(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    hooks: _child.ChildHooks,
    prepare: Prepare,
    basetemp: str | None,
    alarm: tuple[float, float],
) -> tuple[Forked, Isolation]:
    """The test's child, started, and the isolation it runs in: the spare forked for it if
    pytest's state is still the one it was forked from, else one forked now.

    ``prepare``'s failure to set up is raised as it is; a failure to fork as ``CouldNotFork``.
    """
    config = item.config
    spare = _take_spare(config)
    if spare is not None and _fits(spare, item, nextitem) and spare.isolation.still_valid():
        spare.isolation.begin()
        state = _handover(item, alarm, spare.filters)
        if state is not None and _go(config, spare.child, state):
            return dataclasses.replace(
                spare.child, started=_processes.boot_ticks()
            ), spare.isolation
    if spare is not None:
        _discard(spare)
    isolation = prepare(basetemp)
    isolation.begin()
    try:
        return _fork(item, nextitem, hooks, isolation, alarm), isolation
    except OSError as error:
        isolation.release()
        raise CouldNotFork(error) from error


def _fork(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    hooks: _child.ChildHooks,
    isolation: Isolation,
    alarm: tuple[float, float] | None,
) -> Forked:
    """Fork the test's child; with no ``alarm``, a spare that waits for ``_go``."""
    sys.stdout.flush()
    sys.stderr.flush()
    _linux.flush_c_stdio()
    fds: list[int] = []
    parent_pid = os.getpid()
    started = _processes.boot_ticks()
    try:
        fds += os.pipe()
        fds += os.pipe()  # faulthandler's, at a crash or a timeout
        fds += os.pipe() if alarm is None else (-1, -1)
        gc.freeze()  # the child's collector then leaves the inherited objects and their pages alone
        pid = _processes.fork()
    except OSError:  # out of descriptors or processes: nothing forked, nothing left open
        gc.unfreeze()
        for fd in fds:
            if fd != -1:
                os.close(fd)
        raise
    read_fd, write_fd, stacks_read, stacks_write, go_read, go_write = fds
    if pid == 0:
        for fd in (read_fd, stacks_read, go_write):
            if fd != -1:
                os.close(fd)
        if alarm is None:
            go = functools.partial(_wait_for_go, go_read, item)
        else:
            go = functools.partial(_started, alarm)
        _child.main(
            item,
            nextitem,
            hooks,
            isolation.ready,
            isolation.enter,
            write_fd,
            parent_pid,
            stacks_write,
            go,
        )
    gc.unfreeze()
    for fd in (write_fd, stacks_write, go_read):
        if fd != -1:
            os.close(fd)
    return Forked(pid, read_fd, stacks_read, go_write, started)


def _handover(
    item: pytest.Item, alarm: tuple[float, float], inherited: Sequence[object]
) -> bytes | None:
    """What changed here since the spare was forked and it must take over: the alarm,
    the session's failure count and stop flags, the warning filters of this test."""
    session = item.session
    filters = None if warnings.filters == inherited else warnings.filters
    state = (alarm, session.testsfailed, session.shouldfail, session.shouldstop, filters)
    try:
        return pickle.dumps(state)
    except Exception:  # a filter that cannot cross: fork afresh instead
        return None


def _started(alarm: tuple[float, float]) -> tuple[float, float]:
    """A child forked when its test's turn came: nothing to wait for."""
    return alarm


def _wait_for_go(fd: int, item: pytest.Item) -> tuple[float, float]:
    """In a spare, ready and in its namespace: block until told to run (taking over
    ``handover``) or to leave."""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        os.close(fd)
        if not chunks:
            os._exit(0)
        alarm, failed, shouldfail, shouldstop, filters = pickle.loads(b"".join(chunks))
        session = item.session
        session.testsfailed, session.shouldfail, session.shouldstop = failed, shouldfail, shouldstop
        if filters is not None:
            warnings.filters[:] = filters  # type: ignore[index]
            getattr(warnings, "_filters_mutated", lambda: None)()
        return alarm  # type: ignore[no-any-return]
    except BaseException:  # a Ctrl-C while waiting: leave without a trace, atexit included
        os._exit(0)


def _go(config: pytest.Config, child: Forked, handover: bytes) -> bool:
    """Tell the spare to run; False if it is gone (something killed it meanwhile), or if
    pytest's mount table changed since the spare was forked: its namespace is a copy of
    the table as it was, and the test must find it as it is."""
    if _mount_table(config).touched():
        return False
    try:
        _linux.write_without_sigpipe(child.go, handover)  # small: well under a pipe's capacity
    except BrokenPipeError:
        return False
    os.close(child.go)
    return True


def fork_spare(
    item: pytest.Item,
    nextitem: pytest.Item,
    hooks: _child.ChildHooks,
    prepare_next: Prepare,
    basetemp: str | None,
) -> None:
    """While this test's child runs, fork the next test's, if pytest's state will not change."""
    config = item.config
    if item.session.shouldstop or item.session.shouldfail or hasattr(config, "workerinput"):
        return  # stopping; or under xdist, whose worker picks the next test itself
    if not _internals.next_shares_state(item, nextitem, basetemp is not None):
        return
    try:
        isolation = prepare_next(basetemp)
    except _internals.SETUP_FAILURES:
        return  # its own protocol reports that
    after_next = _following(item.session, nextitem)
    filters = list(warnings.filters)
    _mount_table(config).touched()  # from now on, a change throws the spare away
    child = _fork(nextitem, after_next, hooks, isolation, None)
    kept_children(config).add(child.pid)
    state = _internals.state_token(nextitem)
    handler = signal.getsignal(signal.SIGALRM)
    config.stash[_spare_key] = Spare(
        nextitem, after_next, isolation, child, state, filters, handler
    )


def _fits(spare: Spare, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    return (
        spare.item is item
        and spare.nextitem is nextitem
        and spare.state.same_as(_internals.state_token(item))
        and signal.getsignal(signal.SIGALRM) is spare.alarm_handler
    )


def _mount_table(config: pytest.Config) -> _mountinfo.Watch:
    if _table_key not in config.stash:
        config.stash[_table_key] = _mountinfo.Watch()
    return config.stash[_table_key]


def _discard(spare: Spare) -> None:
    """A spare whose test will not run as it expected: tell it to leave, free its resources."""
    os.close(spare.child.go)
    os.close(spare.child.reports)
    os.close(spare.child.stacks)
    with contextlib.suppress(ChildProcessError):  # a Ctrl-C may have ended and reaped it
        os.waitpid(spare.child.pid, 0)
    spare.isolation.release()


def discard_spare(config: pytest.Config) -> None:
    spare = config.stash.get(_spare_key, None)
    config.stash[_spare_key] = None
    if spare is not None:
        kept_children(config).discard(spare.child.pid)
        _discard(spare)


def _following(session: pytest.Session, item: pytest.Item) -> pytest.Item | None:
    """The item after ``item`` in the session's order (which xdist does not follow)."""
    if _positions_key not in session.stash:
        session.stash[_positions_key] = {id(it): i for i, it in enumerate(session.items)}
    position = session.stash[_positions_key].get(id(item))
    if position is None or position + 1 >= len(session.items):
        return None
    return session.items[position + 1]


_spare_key = pytest.StashKey[Spare | None]()
_table_key = pytest.StashKey[_mountinfo.Watch]()
_positions_key = pytest.StashKey[dict[int, int]]()


def _take_spare(config: pytest.Config) -> Spare | None:
    """The spare forked for the test about to run, if any; it is the caller's now."""
    spare = config.stash.get(_spare_key, None)
    config.stash[_spare_key] = None
    if spare is not None:
        kept_children(config).discard(spare.child.pid)
    return spare
