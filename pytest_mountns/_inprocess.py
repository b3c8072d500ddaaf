"""The in-process runner: the test runs in pytest's own thread, moved into its namespace.

No fork, no pipe, no serialization: the reports are pytest's own objects,
logged as they are made. Like the fork runner, it knows nothing of mounts:
the ``Isolation``'s ``enter`` moves the thread in at setup and its
``leave`` brings it back after the test's own teardown, whatever happened.
The wider scopes are set up and torn down outside, as in a forked run.
"""

from __future__ import annotations

import threading

import pytest

from . import _internals, _isolation, _linux, _output, _phases, _processes

_entry_key = pytest.StashKey[_phases.EnterAtSetup]()


class LeftoverThreadWarning(pytest.PytestWarning):
    """An in-process test left threads running, in its namespace and beyond its end."""


def run_in_process(
    attempt: _isolation.Attempt, nextitem: pytest.Item | None, prepare: _isolation.Prepare
) -> BaseException | None:
    """Run the item's setup, call and teardown here, inside the isolation ``prepare`` gives.

    As the fork runner's ``run_isolated``: a failure to set up the wider scopes, or
    to prepare, is returned with nothing of the test run.
    """
    item = attempt.item
    try:
        basetemp = _internals.setup_wider_scopes(item)
        isolation = prepare(basetemp)
    except _internals.SETUP_FAILURES as error:
        return error
    entry = _entry(item.config)
    isolation.begin()
    aside = _internals.set_wider_finalizers_aside(item)
    _internals.renew_request(item)
    threads = set(threading.enumerate())
    since = _processes.boot_ticks()
    entry.arm(isolation.enter)
    with _linux.subreaper():  # a daemon the test double-forks is adopted here, and ended
        try:
            try:
                _phases.run_phases(item, nextitem, attempt.deliver)
            except BaseException:  # Ctrl-C or pytest.exit: the test's fixtures end inside, too
                _internals.teardown_everything_quietly(item)
                raise
        finally:
            entry.arm(None)
            thread_problem = _warn_about_threads(item, threads)
            try:
                isolation.leave()
            finally:
                _internals.put_wider_finalizers_back(item, aside)
                _internals.release_request(item)
            problems = _isolation.end_leftovers(item, since)
    if thread_problem is not None:
        problems.append(thread_problem)
    _output.deliver(item, _output.output(item))
    _isolation.finish(attempt, nextitem, isolation, problems)
    return None


def _warn_about_threads(item: pytest.Item, before: set[threading.Thread]) -> str | None:
    """Threads the test started and left running stay in its namespace: say which."""
    left = [
        thread.name
        for thread in threading.enumerate()
        if thread not in before and not thread.name.startswith("pytest-mountns-")  # ours
    ]
    if not left:
        return None
    return _phases.warn_or_fail(
        item,
        LeftoverThreadWarning(
            f"mountns: the test left {len(left)} thread(s) running in its namespace: "
            f"{', '.join(left)}; what they do next is not isolated from the tests "
            "after it (fork mode would end them with the test)"
        ),
    )


def _entry(config: pytest.Config) -> _phases.EnterAtSetup:
    """Registered once per session; it does nothing until armed."""
    if _entry_key not in config.stash:
        entry = _phases.EnterAtSetup()
        config.pluginmanager.register(entry, "mountns-inprocess")
        config.stash[_entry_key] = entry
    return config.stash[_entry_key]
