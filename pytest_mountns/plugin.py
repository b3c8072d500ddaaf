"""The pytest11 entry point: options, the marker, the protocol hook, fixtures, header."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import unittest
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from . import (
    _adapters,
    _audit,
    _forking,
    _hermetic,
    _inprocess,
    _internals,
    _mountinfo,
    _namespace,
    _output,
    _plan,
    _probe,
    _runner,
    _session,
    _spec,
    _thread_namespace,
    hookspecs,
)
from ._imperative import MountNamespace
from ._plan import MountPlan
from ._spec import DeclarationError, TmpfsOptions

MARKER_HELP = (
    "mountns(*tmpfs_targets, tmpfs=None, bind=None, ro_bind=None, readonly=None, hide=None, "
    "overlay=None, propagation='private', timeout=None, fork=None): run the test in a private "
    "Linux mount namespace, in a forked child (fork=False: in pytest's own thread). Each "
    "positional path and tmpfs= entry gets a fresh tmpfs (tmpfs= may map path -> options: "
    "'size=16m,mode=0700,ro' or {'size': '16m'}; size, nr_inodes, mode, uid, gid, ro, "
    "noexec). bind= and ro_bind= map target -> source "
    "(relative to the test file). readonly= makes paths read-only, hide= makes them empty, "
    "overlay= makes writes to them vanish. propagation='slave' lets the host's new mounts in. "
    "timeout= fails and kills a test that runs longer (seconds). Closest marker wins."
)
DEFAULT_TMPFS_SIZE = "64m"
MODES = ("fork", "inprocess")


@dataclass(frozen=True)
class Settings:
    isolate_all: bool
    require: bool
    userns: str
    tmpfs_size: str
    timeout: float | None
    mode: str
    hermetic: str = "off"


settings_key = pytest.StashKey[Settings]()
availability_key = pytest.StashKey[_probe.Availability]()
setup_error_key = pytest.StashKey[BaseException]()
inside_key = pytest.StashKey[bool]()
mountpoint_key = pytest.StashKey[str]()
mount_watch_key = pytest.StashKey[_mountinfo.Watch]()
no_inprocess_key = pytest.StashKey[str | None]()
session_failure_key = pytest.StashKey[str | None]()
forked_instead_key = pytest.StashKey[int]()
hermetic_layout_key = pytest.StashKey[_hermetic.Watched]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mountns", "private mount namespaces (pytest-mountns)")
    group.addoption(
        "--mountns-all",
        action="store_true",
        default=False,
        help="isolate every test in its own mount namespace, marked or not (ini: mountns_all)",
    )
    group.addoption(
        "--mountns-require",
        action="store_true",
        default=False,
        help="where isolation is impossible, error instead of skip (ini: mountns_require)",
    )
    group.addoption(
        "--mountns-userns",
        choices=_probe.USERNS_MODES,
        default=None,
        help="how to get the right to mount: auto (root's plain namespace, else a user "
        "namespace per test, or for --mountns-mode=inprocess one for the session; the "
        "default), always (a user namespace per test), never (root only), session (one user "
        "namespace for the whole session: in-process isolation without root) "
        "(ini: mountns_userns)",
    )
    parser.addini("mountns_all", type="bool", default=False, help="isolate every test")
    parser.addini("mountns_require", type="bool", default=False, help="error instead of skip")
    group.addoption(
        "--mountns-timeout",
        type=_timeout_option,
        default=None,
        metavar="SECONDS",
        help="fail and kill an isolated test that runs longer (ini: mountns_timeout; "
        "the marker's timeout= wins)",
    )
    group.addoption(
        "--mountns-mode",
        choices=MODES,
        default=None,
        help="fork (a child per test; the default) or inprocess (pytest's own thread enters "
        "the namespace: far cheaper, needs CAP_SYS_ADMIN, contains no crash; a test with a "
        "timeout still forks) (ini: mountns_mode; the marker's fork= wins)",
    )
    group.addoption(
        "--mountns-hermetic",
        nargs="?",
        const="on",
        choices=_audit.MODES,
        default=None,
        help="cover every writable file system of every isolated test with a throwaway "
        "overlay: on (the default value), report (list what each test wrote), strict (fail "
        "a test that wrote), off (ini: mountns_hermetic; the marker's hermetic= wins)",
    )
    parser.addini("mountns_hermetic", default="off", help="off, on, report or strict")
    parser.addini("mountns_mode", default="fork", help="fork or inprocess")
    parser.addini("mountns_userns", default="auto", help="auto, always, never or session")
    parser.addini("mountns_timeout", default="", help="seconds an isolated test may run")
    parser.addini(
        "mountns_tmpfs_size",
        default=DEFAULT_TMPFS_SIZE,
        help=f"size of the isolated_tmpfs fixture's tmpfs (default {DEFAULT_TMPFS_SIZE})",
    )


def _timeout_option(value: str) -> float:
    """argparse's ``type=``: a bad value is a usage error that says why."""
    try:
        return _spec.parse_timeout(value, "--mountns-timeout")
    except DeclarationError as error:
        raise argparse.ArgumentTypeError(error.reason) from None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """First, so that the session's user namespace is entered while the process has one
    thread: pytest-rerunfailures, for one, starts a server thread in its own configure."""
    config.addinivalue_line("markers", MARKER_HELP)
    size = str(config.getini("mountns_tmpfs_size"))
    try:
        _spec.parse_amount(size, f"ini mountns_tmpfs_size={size!r}", allow_percent=True)
    except DeclarationError as error:
        raise pytest.UsageError(str(error)) from None
    userns = config.getoption("mountns_userns") or str(config.getini("mountns_userns"))
    if userns not in _probe.USERNS_MODES:
        choices = ", ".join(_probe.USERNS_MODES)
        raise pytest.UsageError(f"ini mountns_userns={userns!r}: must be one of {choices}")
    mode = config.getoption("mountns_mode") or str(config.getini("mountns_mode"))
    if mode not in MODES:
        raise pytest.UsageError(f"ini mountns_mode={mode!r}: must be one of {', '.join(MODES)}")
    hermetic = config.getoption("mountns_hermetic") or str(config.getini("mountns_hermetic"))
    if hermetic not in _audit.MODES:
        choices = ", ".join(_audit.MODES)
        raise pytest.UsageError(f"ini mountns_hermetic={hermetic!r}: must be one of {choices}")
    timeout = config.getoption("mountns_timeout")
    ini_timeout = str(config.getini("mountns_timeout")).strip()
    if timeout is None and ini_timeout:
        try:
            timeout = _spec.parse_timeout(ini_timeout, f"ini mountns_timeout={ini_timeout!r}")
        except DeclarationError as error:
            raise pytest.UsageError(str(error)) from None
    config.stash[settings_key] = Settings(
        isolate_all=bool(config.getoption("mountns_all") or config.getini("mountns_all")),
        require=bool(config.getoption("mountns_require") or config.getini("mountns_require")),
        userns=userns,
        tmpfs_size=size,
        timeout=timeout,
        mode=mode,
        hermetic=hermetic,
    )
    config.pluginmanager.register(_audit.Audit(), "mountns-audit")
    config.stash[forked_instead_key] = 0
    config.stash[session_failure_key] = _start_session(config, userns, mode)
    _internals.route_protocol(config, _run_protocol)
    _adapters.warn_about_unsupported(config, mode)


def _start_session(config: pytest.Config, userns: str, mode: str) -> str | None:
    """Enter the session's user namespace where it is wanted; why not, where it could not be.

    xdist's workers, executed by this process, inherit it and keep the capabilities
    they need there; the programs tests start do not (a worker drops them for its own).
    """
    for_workers = _starts_xdist_workers(config)
    if _session.wanted(userns, mode):
        try:
            return _session.start(for_workers)
        except _session.Stranded as error:
            pytest.exit(str(error), returncode=pytest.ExitCode.INTERNAL_ERROR)
    _session.settle_inherited(for_workers)
    return None


def _starts_xdist_workers(config: pytest.Config) -> bool:
    """As xdist decides it (its ``pytest_cmdline_main`` has run by configure)."""
    if hasattr(config, "workerinput"):
        return False
    return config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))


def pytest_unconfigure(config: pytest.Config) -> None:
    _internals.unroute_protocol(config)
    _thread_namespace.settle()
    _forking.discard_spare(config)
    _runner.reap_exited(config, block=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        availability = _availability(config)
    except OSError as error:
        return [f"mountns: could not find out how to isolate tests: {error}"]
    if availability.available:
        state = f"available ({availability.how})"
    else:
        state = f"unavailable: {availability.how}"
    mode = _mode_line(config) if availability.available else ""
    lines = [f"mountns: isolation {state}{mode}; / propagation: {_mountinfo.root_propagation()}"]
    hermetic = config.stash[settings_key].hermetic
    if availability.available and hermetic != "off":
        lines.append(
            f"mountns: hermetic ({hermetic}): every writable file system of each isolated test "
            "behind a throwaway overlay"
            + (" (read-only, and overlays where you write)" if availability.only_own_ids else "")
        )
    failure = config.stash.get(session_failure_key, None)
    if failure is not None and config.stash[settings_key].mode == "fork":
        lines.append(f"mountns: no user namespace for the session: {failure}")
    if availability.available and not availability.user_namespace and availability.only_own_ids:
        lines.append(
            f"mountns: the whole run is in one user namespace, which maps uid {os.getuid()} and "
            f"gid {os.getgid()} only: other users' files show as owned by the overflow id "
            "(nobody), setuid programs (sudo) gain nothing, the host's later mounts show, "
            "and the programs tests start are in it too"
        )
    return lines


def _mode_line(config: pytest.Config) -> str:
    """Which runner isolated tests get; where in-process was asked for and cannot be, why."""
    settings = config.stash[settings_key]
    if settings.mode == "fork":
        return "; mode fork"
    reason = _no_inprocess(config)
    if reason is not None:
        return f"; mode fork, as inprocess is unavailable: {reason}"
    if settings.timeout is not None:
        return "; mode fork, as the session's timeout (mountns_timeout) needs a forked child"
    return "; mode inprocess (tests with a timeout fork)"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where tests asked for in-process isolation and forked instead, say so once, and why."""
    config = terminalreporter.config
    forked = config.stash.get(forked_instead_key, 0)
    if forked:
        terminalreporter.write_line(
            f"mountns: {forked} test(s) asked for in-process isolation and forked instead: "
            f"{_no_inprocess(config)}"
        )


def _run_protocol(
    item: pytest.Item, log: bool, nextitem: pytest.Item | None
) -> list[pytest.TestReport]:
    """One run of the item's setup, call and teardown, isolated if it asks for it.

    In place of pytest's ``runtestprotocol``: pytest's protocol calls it once
    per test, a plugin that reruns tests once per attempt, so each attempt gets
    a fresh namespace. Whatever stops the isolation before the test starts (a
    bad declaration, no way to isolate) is left to pytest's own protocol to
    report, through ``pytest_runtest_setup`` below, as it would report any setup error.
    """
    if not _wants_isolation(item):
        # No thread of ours while a test runs in pytest's process: it may fork.
        _thread_namespace.settle()
        return _internals.run_pytest_s_protocol(item, log, nextitem)
    outcome = _run_isolated(item, log, nextitem)
    if isinstance(outcome, list):
        return outcome
    if outcome is not None:
        item.stash[setup_error_key] = outcome
    return _internals.run_pytest_s_protocol(item, log, nextitem)


def _run_isolated(
    item: pytest.Item, log: bool, nextitem: pytest.Item | None
) -> list[pytest.TestReport] | BaseException | None:
    """The reports of the isolated run, or why nothing of the test ran (None: a skip)."""
    try:
        declaration = _declaration(item)
    except DeclarationError as error:
        return _declaration_failure(item, error)
    try:
        availability = _availability(item.config)
    except OSError as error:  # no descriptor or process left to probe with: not cached
        message = f"{item.nodeid}: mountns: could not find out how to isolate the test: {error}"
        return pytest.fail.Exception(message, pytrace=False)
    if not availability.available:
        reason = f"mountns: isolation unavailable: {availability.how}"
        if item.config.stash[settings_key].require:
            message = f"{item.nodeid}: {reason} (--mountns-require turns this skip into an error)"
            return pytest.fail.Exception(message, pytrace=False)
        item.add_marker(pytest.mark.skip(reason=reason))
        return None

    in_process = _runs_in_process(item, declaration)
    if not in_process and _wants_in_process(item, declaration):
        item.config.stash[forked_instead_key] += 1
    prepare = functools.partial(_prepare, item, declaration, availability, in_process)
    attempt = _runner.Attempt(item, log)
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


def _prepare_next(nextitem: pytest.Item | None) -> _runner.Prepare | None:
    """For a spare child: the next test's preparation, if it is isolated here too."""
    if nextitem is None or not _wants_isolation(nextitem):
        return None
    availability = _availability(nextitem.config)
    try:
        declaration = _declaration(nextitem)
    except DeclarationError:
        return None  # its own protocol reports that
    if not availability.available or _runs_in_process(nextitem, declaration):
        return None
    return functools.partial(_prepare, nextitem, declaration, availability, False)


def _runs_in_process(item: pytest.Item, declaration: _spec.Declaration) -> bool:
    return _wants_in_process(item, declaration) and _no_inprocess(item.config) is None


def _wants_in_process(item: pytest.Item, declaration: _spec.Declaration) -> bool:
    """Whether the marker, else the option, else the ini file asks for the in-process runner.

    A timeout forks, as only a child can be stopped when it overruns: the
    marker's always (with ``fork=False`` it is a declaration error), the
    session's unless the marker says ``fork=False``, which is closer.
    """
    settings = item.config.stash[settings_key]
    if declaration.timeout is not None:
        return False
    if declaration.fork is None:
        return settings.mode == "inprocess" and settings.timeout is None
    return not declaration.fork


def _no_inprocess(config: pytest.Config) -> str | None:
    """Why a thread of this process cannot isolate a test, or None; found out once."""
    if no_inprocess_key not in config.stash:
        session = config.stash.get(session_failure_key, None)
        config.stash[no_inprocess_key] = _probe.why_not_in_process(_availability(config), session)
    return config.stash[no_inprocess_key]


def _prepare(
    item: pytest.Item,
    declaration: _spec.Declaration,
    availability: _probe.Availability,
    in_process: bool,
    basetemp: str | None,
) -> _runner.Isolation:
    """In pytest's process, once the wider fixtures (which may create targets) are set up.

    Targets are checked here, before the fork or the switch, so nothing is
    mounted when one is wrong; and checked again before a spare child forked
    ahead goes, as the test before it may have changed what they lead to.
    """
    mountpoint = None
    if "isolated_tmpfs" in getattr(item, "fixturenames", ()):
        mountpoint = item.stash[mountpoint_key] = tempfile.mkdtemp(prefix="pytest-mountns-")
    settings = item.config.stash[settings_key]
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
        raise _declaration_failure(item, error) from None
    watch = _mount_watch(item.config)
    # With slave propagation the host's own mounts come in: that is the point of
    # it, and those are indistinguishable from a leak here, so there is no check.
    check = _no_check if plan.propagation == "slave" else functools.partial(_leaked_mounts, watch)
    ready: Callable[[], None]
    enter: Callable[[], None]
    leave: Callable[[], None]
    if in_process:
        origins: list[_thread_namespace.Origin] = []
        ready = _nothing_ahead
        enter = functools.partial(_enter_thread, item, plan, availability, audit, origins)
        leave = functools.partial(_leave_thread, item, origins, basetemp is not None)
    else:
        ready = functools.partial(_unshare, availability, plan)
        enter = functools.partial(_enter, item, plan, availability, audit)
        leave = _no_leave
    return _runner.Isolation(
        ready=ready,
        enter=enter,
        leave=leave,
        check=check,
        timeout=declaration.timeout or settings.timeout,
        begin=watch.start,
        release=functools.partial(_remove_mountpoint, item),
        still_valid=functools.partial(_resolves_the_same, plan_now, plan),
    )


def _resolves_the_same(plan_now: Callable[[], _plan.MountPlan], plan: _plan.MountPlan) -> bool:
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


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail, before any fixture runs, a test whose isolation could not be prepared."""
    error = item.stash.get(setup_error_key, None)
    if error is not None:
        del item.stash[setup_error_key]  # a rerun tries again
        raise error


def _no_check() -> None:
    return None


def _nothing_ahead() -> None:
    return None  # in-process, the thread moves in at setup, all at once


def _no_leave() -> None:
    return None  # the child leaves by exiting


def _mount_watch(config: pytest.Config) -> _mountinfo.Watch:
    if mount_watch_key not in config.stash:
        config.stash[mount_watch_key] = _mountinfo.Watch()
    return config.stash[mount_watch_key]


def _leaked_mounts(watch: _mountinfo.Watch) -> str | None:
    changes = watch.changes()
    if changes is None:
        return None
    return (
        "mountns: the host's mount table changed while the isolated test ran "
        "(something reached pytest's own namespace):\n" + changes
    )


def _wants_isolation(item: pytest.Item) -> bool:
    return (
        item.config.stash[settings_key].isolate_all
        or item.get_closest_marker("mountns") is not None
        or not {"isolated_tmpfs", "mountns"}.isdisjoint(getattr(item, "fixturenames", ()))
    )


def _availability(config: pytest.Config) -> _probe.Availability:
    if availability_key not in config.stash:
        config.stash[availability_key] = _probe.probe(config.stash[settings_key].userns)
    return config.stash[availability_key]


def _declaration(item: pytest.Item) -> _spec.Declaration:
    """Parse and merge the item's markers: the closest one wins per target."""
    declaration = _merged(item, item.iter_markers("mountns"))
    _check_class_setup(item)
    return declaration


def _merged(item: pytest.Item, markers: Iterable[pytest.Mark]) -> _spec.Declaration:
    base = str(item.path.parent)
    return _spec.merge(_spec.parse_marker(marker.args, marker.kwargs, base) for marker in markers)


def _check_class_setup(item: pytest.Item) -> None:
    """Refuse mounts declared for a ``TestCase`` class whose class setup would miss them.

    unittest runs ``setUpClass`` and ``tearDownClass`` once per class, in pytest's
    process, outside every test's namespace: what they write to a declared path
    would land on the host, and the tests would not see it.
    """
    cls = getattr(item, "cls", None)
    if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
        return
    own = [
        name
        for name in ("setUpClass", "tearDownClass")
        if getattr(cls, name).__func__ is not getattr(unittest.TestCase, name).__func__
    ]
    assert item.parent is not None
    if own and _merged(item, item.parent.iter_markers("mountns")).mounts:
        raise DeclarationError(
            f"on {cls.__name__}",
            f"it defines {' and '.join(own)}, which unittest runs once for the class, "
            "in pytest's process, outside each test's namespace: what it does with the "
            "declared paths would reach the host. Do that in setUp and tearDown, which run "
            "inside",
        )


def _declaration_failure(item: pytest.Item, error: DeclarationError) -> BaseException:
    return pytest.fail.Exception(f"{item.nodeid}: @pytest.mark.mountns {error}", pytrace=False)


def _unshare(availability: _probe.Availability, plan: MountPlan) -> None:
    """Runs in the forked child at once (a spare: while the test before it runs)."""
    _namespace.enter_private_namespace(
        availability.namespace, availability.user_namespace, plan.propagation
    )


def _enter(
    item: pytest.Item, plan: MountPlan, availability: _probe.Availability, audit: str
) -> None:
    """Runs in the forked child first thing in the test's setup, after the test before it
    ended: a mount made earlier could be left on a directory that test replaced."""
    cover = _namespace.apply(plan, availability.only_own_ids)
    item.config.stash[inside_key] = True
    _audit.enter(item, cover, plan, audit)


def _enter_thread(
    item: pytest.Item,
    plan: MountPlan,
    availability: _probe.Availability,
    audit: str,
    origins: list[_thread_namespace.Origin],
) -> None:
    """In-process, before the test's setup: move this thread in and mount."""
    layout = None
    if plan.hermetic:  # known before the copy is made, as it rarely changes
        layout = item.config.stash.setdefault(hermetic_layout_key, _hermetic.Watched()).layout()
    origins.append(_thread_namespace.enter(plan.propagation))
    item.config.stash[inside_key] = True
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
    item.config.stash[inside_key] = False
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


@pytest.fixture
def isolated_tmpfs(request: pytest.FixtureRequest) -> Path:
    """A fresh, empty, writable tmpfs that only this test sees; asking for it isolates the test.

    Its size is the ini option ``mountns_tmpfs_size`` (default 64m). The
    mount point is a directory the parent made and removes after the test.
    """
    if not request.config.stash.get(inside_key, False):
        pytest.fail("isolated_tmpfs is only available inside an isolated test", pytrace=False)
    mountpoint = request.node.stash.get(mountpoint_key, None)
    if mountpoint is None:
        pytest.fail(
            "isolated_tmpfs must be requested as an argument or with usefixtures, "
            "not through request.getfixturevalue: its mount point is made before the fork",
            pytrace=False,
        )
    size = request.config.stash[settings_key].tmpfs_size
    _namespace.mount_tmpfs(mountpoint, TmpfsOptions(size=size, mode=0o700))
    return Path(mountpoint)  # the namespace, and the mount with it, ends with the test


@pytest.fixture
def mountns(request: pytest.FixtureRequest) -> MountNamespace:
    """Mounts decided inside the test, like ``monkeypatch`` for the file system.

    ``mountns.tmpfs(path, **options)``, ``mountns.bind(source, target,
    readonly=False)``, ``mountns.readonly(path)``, ``mountns.hide(path)``,
    ``mountns.overlay(path)``, and ``mountns.mounts()``, the namespace's mount
    table. Asking for it isolates the test; everything ends with the test.
    """
    if not request.config.stash.get(inside_key, False):
        pytest.fail("the mountns fixture is only available inside an isolated test", pytrace=False)
    availability = request.config.stash[availability_key]
    writes = functools.partial(_audit.writes, request.node)
    return MountNamespace(str(request.path.parent), availability.only_own_ids, writes)
