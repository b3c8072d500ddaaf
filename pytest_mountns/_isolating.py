"""Isolating one test: its ``Isolation`` prepared, and handed to the runner that fits.

What the runners are given is all that knows of mounts: what the child (or
pytest's thread) runs at the test's setup, what brings the thread back, what
checks the host once the test is over.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import NoReturn

import pytest

from . import (
    _adapters,
    _audit,
    _inprocess,
    _internals,
    _isolation,
    _layout,
    _mountinfo,
    _namespace,
    _output,
    _plan,
    _policy,
    _probe,
    _runner,
    _spec,
    _state,
    _thread_namespace,
)
from ._plan import MountPlan
from ._spec import DeclarationError

mountpoint_key = pytest.StashKey[str]()
"""The ``isolated_tmpfs`` fixture's mount point, made before the fork."""


def run(
    item: pytest.Item, log: bool, nextitem: pytest.Item | None
) -> list[pytest.TestReport] | BaseException | None:
    """The reports of the isolated run, or why nothing of the test ran (None: a skip)."""
    state = _state.of(item.config)
    try:
        declaration = _policy.declaration(item)
    except DeclarationError as error:
        return _policy.declaration_failure(item, error)
    try:
        availability = state.availability()
    except OSError as error:  # no descriptor or process left to probe with: not cached
        message = f"{item.nodeid}: mountns: could not find out how to isolate the test: {error}"
        return pytest.fail.Exception(message, pytrace=False)
    if not availability.available:
        reason = f"mountns: isolation unavailable: {availability.how}"
        if state.settings.require:
            message = f"{item.nodeid}: {reason} (--mountns-require turns this skip into an error)"
            return pytest.fail.Exception(message, pytrace=False)
        item.add_marker(pytest.mark.skip(reason=reason))
        return None

    in_process = _policy.runs_in_process(item, declaration)
    if not in_process and _policy.wants_in_process(item, declaration):
        state.forked_instead += 1
    prepare = functools.partial(_prepare, item, declaration, availability, in_process)
    attempt = _isolation.Attempt(item, log)
    _adapters.reset_item_state(item)
    _output.start(item)
    try:
        if in_process:
            failure = _inprocess.run_in_process(attempt, nextitem, prepare)
        else:
            _thread_namespace.settle()  # no thread of ours in pytest's process when it forks
            failure = _runner.run_isolated(attempt, nextitem, prepare, _prepare_next(nextitem))
    finally:
        _remove_mountpoint(item)
    return attempt.reports if failure is None else failure


def _prepare_next(nextitem: pytest.Item | None) -> _isolation.Prepare | None:
    """For a spare child: the next test's preparation, if it is isolated here too."""
    if nextitem is None or not _policy.wants_isolation(nextitem):
        return None
    availability = _state.of(nextitem.config).availability()
    try:
        declaration = _policy.declaration(nextitem)
    except DeclarationError:
        return None  # its own protocol reports that
    if not availability.available or _policy.runs_in_process(nextitem, declaration):
        return None
    return functools.partial(_prepare, nextitem, declaration, availability, False)


def _prepare(
    item: pytest.Item,
    declaration: _spec.Declaration,
    availability: _probe.Availability,
    in_process: bool,
    basetemp: str | None,
) -> _isolation.Isolation:
    """In pytest's process, once the wider fixtures (which may create targets) are set up.

    Targets are checked here, before the fork or the switch, so nothing is
    mounted when one is wrong; and checked again before a spare child forked
    ahead goes, as the test before it may have changed what they lead to.
    """
    mountpoint = None
    if "isolated_tmpfs" in getattr(item, "fixturenames", ()):
        mountpoint = item.stash[mountpoint_key] = tempfile.mkdtemp(prefix="pytest-mountns-")
    state = _state.of(item.config)
    settings = state.settings
    hermetic = settings.hermetic != "off" if declaration.hermetic is None else declaration.hermetic
    audit = settings.hermetic if settings.hermetic in ("report", "strict") else "on"
    plan_now = functools.partial(
        _plan.resolve,
        declaration,
        hermetic=hermetic,
        ids=(os.getuid(), os.getgid()) if availability.only_own_ids else None,
        keep={basetemp: "pytest's basetemp"} if basetemp is not None else {},
        make={mountpoint: "isolated_tmpfs's mount point"} if mountpoint is not None else {},
    )
    try:
        plan = plan_now()
    except DeclarationError as error:
        _remove_mountpoint(item)
        raise _policy.declaration_failure(item, error) from None
    # Worked out here, in pytest's namespace, of which the test's is a copy: a spare child
    # forked ahead goes only if the mount table is still the same (``_forking``).
    layout = state.hermetic_layout.layout() if plan.hermetic else None
    watch = state.mount_watch()
    # With slave propagation the host's own mounts come in: that is the point of
    # it, and those are indistinguishable from a leak here, so there is no check.
    check = _no_check if plan.propagation == "slave" else functools.partial(_leaked_mounts, watch)
    ready: Callable[[], None]
    enter: Callable[[], None]
    leave: Callable[[], None]
    if in_process:
        origins: list[_thread_namespace.Origin] = []
        ready = _nothing_ahead
        enter = functools.partial(_enter_thread, item, plan, layout, availability, audit, origins)
        leave = functools.partial(_leave_thread, item, origins, basetemp is not None)
    else:
        ready = functools.partial(_unshare, availability, plan)
        enter = functools.partial(_enter, item, plan, layout, availability, audit)
        leave = _no_leave
    return _isolation.Isolation(
        ready=ready,
        enter=enter,
        leave=leave,
        check=check,
        timeout=declaration.timeout or settings.timeout,
        begin=watch.start,
        release=functools.partial(_remove_mountpoint, item),
        still_valid=functools.partial(_resolves_the_same, plan_now, plan),
    )


def _resolves_the_same(plan_now: Callable[[], MountPlan], plan: MountPlan) -> bool:
    try:
        return plan_now() == plan
    except DeclarationError:
        return False  # the test's own protocol reports it, prepared afresh


def _remove_mountpoint(item: pytest.Item) -> None:
    """Removed by pytest's process, not the child, so a crashed test leaves nothing either."""
    mountpoint = item.stash.get(mountpoint_key, None)
    if mountpoint is not None:
        shutil.rmtree(mountpoint, ignore_errors=True)
        del item.stash[mountpoint_key]


def _no_check() -> None:
    return None


def _nothing_ahead() -> None:
    return None  # in-process, the thread moves in at setup, all at once


def _no_leave() -> None:
    return None  # the child leaves by exiting


def _leaked_mounts(watch: _mountinfo.Watch) -> str | None:
    changes = watch.changes()
    if changes is None:
        return None
    return (
        "mountns: the host's mount table changed while the isolated test ran "
        "(something reached pytest's own namespace):\n" + changes
    )


def _unshare(availability: _probe.Availability, plan: MountPlan) -> None:
    """Runs in the forked child at once (a spare: while the test before it runs)."""
    _namespace.enter_private_namespace(
        availability.namespace, availability.user_namespace, plan.propagation
    )


def _enter(
    item: pytest.Item,
    plan: MountPlan,
    layout: _layout.Layout | None,
    availability: _probe.Availability,
    audit: str,
) -> None:
    """Runs in the forked child first thing in the test's setup, after the test before it
    ended: a mount made earlier could be left on a directory that test replaced."""
    cover = _namespace.apply(plan, availability.only_own_ids, layout)
    _state.of(item.config).inside = True
    _audit.enter(item, cover, plan, audit)


def _enter_thread(
    item: pytest.Item,
    plan: MountPlan,
    layout: _layout.Layout | None,
    availability: _probe.Availability,
    audit: str,
    origins: list[_thread_namespace.Origin],
) -> None:
    """In-process, before the test's setup: move this thread in and mount."""
    origins.append(_thread_namespace.enter(plan.propagation))
    _state.of(item.config).inside = True
    cover = _namespace.apply(plan, availability.only_own_ids, layout)
    _audit.enter(item, cover, plan, audit)


def _leave_thread(
    item: pytest.Item, origins: list[_thread_namespace.Origin], had_basetemp: bool
) -> None:
    """In-process, after the test's own teardown, whatever happened: back to pytest's namespace.

    Where the thread cannot return, the run ends at once (exit code 3): anything
    more it did (the next test, session teardown, junitxml, the summary)
    would happen inside the test's namespace, and be lost or wrong.
    A basetemp that pytest first made inside (a ``tmp_path`` asked for late) is
    forgotten, as a forked child's is: under the test's tmpfs it is not on the host.
    """
    _state.of(item.config).inside = False
    _audit.leave(item)
    while origins:
        try:
            _thread_namespace.leave(origins.pop())
        except _thread_namespace.NoWayBack as error:
            _stop_now(
                f"mountns: {item.nodeid}: {error}. The run stops here, before anything more is "
                "written: session teardown, junitxml and the summary would all land in the "
                "test's namespace. (Did the test give up root for good, or close and cover "
                "/proc? Such a test must fork: fork=True.)"
            )
    if not had_basetemp:
        _internals.forget_basetemp_made_inside(item.config)


def _stop_now(reason: str) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.write(f"\n{reason}\n")
    sys.stderr.flush()
    os._exit(pytest.ExitCode.INTERNAL_ERROR)
