"""The pytest11 entry point: options, the marker, the hooks and the fixtures, wired.

What each does lives elsewhere: the settings in ``_settings``, the session's
state (and its header and summary lines) in ``_state``, which tests are
isolated and how in ``_policy``, one test's isolation in ``_isolating``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from . import (
    _adapters,
    _audit,
    _forking,
    _internals,
    _isolating,
    _namespace,
    _policy,
    _probe,
    _runner,
    _settings,
    _state,
    _thread_namespace,
    hookspecs,
)
from ._imperative import MountNamespace
from ._spec import TmpfsOptions

MARKER_HELP = (
    "mountns(*tmpfs_targets, tmpfs=None, bind=None, ro_bind=None, readonly=None, hide=None, "
    "overlay=None, propagation='private', timeout=None, fork=None, hermetic=None): run the test "
    "in a private Linux mount namespace, in a forked child (fork=False: in pytest's own thread). "
    "Each "
    "positional path and tmpfs= entry gets a fresh tmpfs (tmpfs= may map path -> options: "
    "'size=16m,mode=0700,ro' or {'size': '16m'}; size, nr_inodes, mode, uid, gid, ro, "
    "noexec). bind= and ro_bind= map target -> source "
    "(relative to the test file). readonly= makes paths read-only, hide= makes them empty, "
    "overlay= makes writes to them vanish. propagation='slave' lets the host's new mounts in. "
    "timeout= fails and kills a test that runs longer (seconds). hermetic=True puts every "
    "writable file system behind a throwaway overlay (--mountns-hermetic: every isolated test). "
    "Closest marker wins."
)

setup_error_key = pytest.StashKey[BaseException]()
"""Why a test's isolation could not be prepared, for its setup to raise."""


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
        type=_settings.timeout_option,
        default=None,
        metavar="SECONDS",
        help="fail and kill an isolated test that runs longer (ini: mountns_timeout; "
        "the marker's timeout= wins)",
    )
    group.addoption(
        "--mountns-mode",
        choices=_settings.MODES,
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
        default=_settings.DEFAULT_TMPFS_SIZE,
        help=f"size of the isolated_tmpfs fixture's tmpfs (default {_settings.DEFAULT_TMPFS_SIZE})",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """First, so that the session's user namespace is entered while the process has one
    thread: pytest-rerunfailures, for one, starts a server thread in its own configure."""
    config.addinivalue_line("markers", MARKER_HELP)
    settings = _settings.read(config)
    config.pluginmanager.register(_audit.Audit(), "mountns-audit")
    _state.start(config, settings)
    _internals.route_protocol(config, _run_protocol)
    _adapters.warn_about_unsupported(config, settings.mode)


def pytest_unconfigure(config: pytest.Config) -> None:
    _internals.unroute_protocol(config)
    _thread_namespace.settle()
    _forking.discard_spare(config)
    _runner.reap_exited(config, block=True)


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
    if not _policy.wants_isolation(item):
        # No thread of ours while a test runs in pytest's process: it may fork.
        _thread_namespace.settle()
        return _internals.run_pytest_s_protocol(item, log, nextitem)
    outcome = _isolating.run(item, log, nextitem)
    if isinstance(outcome, list):
        return outcome
    if outcome is not None:
        item.stash[setup_error_key] = outcome
    return _internals.run_pytest_s_protocol(item, log, nextitem)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail, before any fixture runs, a test whose isolation could not be prepared."""
    error = item.stash.get(setup_error_key, None)
    if error is not None:
        del item.stash[setup_error_key]  # a rerun tries again
        raise error


@pytest.fixture
def isolated_tmpfs(request: pytest.FixtureRequest) -> Path:
    """A fresh, empty, writable tmpfs that only this test sees; asking for it isolates the test.

    Its size is the ini option ``mountns_tmpfs_size`` (default 64m). The
    mount point is a directory the parent made and removes after the test.
    """
    if not _state.of(request.config).inside:
        pytest.fail("isolated_tmpfs is only available inside an isolated test", pytrace=False)
    mountpoint = request.node.stash.get(_isolating.mountpoint_key, None)
    if mountpoint is None:
        pytest.fail(
            "isolated_tmpfs must be requested as an argument or with usefixtures, "
            "not through request.getfixturevalue: its mount point is made before the fork",
            pytrace=False,
        )
    size = _state.of(request.config).settings.tmpfs_size
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
    state = _state.of(request.config)
    if not state.inside:
        pytest.fail("the mountns fixture is only available inside an isolated test", pytrace=False)
    availability = state.availability()
    writes = functools.partial(_audit.writes, request.node)
    return MountNamespace(str(request.path.parent), availability.only_own_ids, writes)
