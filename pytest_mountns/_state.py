"""One session's state: its settings, what the probe found, what the session entered.

Made and registered at configure, as pytest's logging plugin registers its
own object; its hooks write the header and summary lines this state decides.
What is found out lazily (the probe, the mount table's watch) is found out in
pytest's own namespace, before any test's.
"""

from __future__ import annotations

import os

import pytest

from . import _layout, _mountinfo, _probe, _session
from ._settings import Settings

PLUGIN_NAME = "mountns-state"


class SessionState:
    def __init__(self, settings: Settings, session_failure: str | None) -> None:
        self.settings = settings
        self.session_failure = session_failure
        """Why the session's user namespace, where it was wanted, could not be entered."""
        self.inside = False
        """Whether a test runs in its namespace in this process now (its fixtures may mount)."""
        self.forked_instead = 0
        """Tests that asked for in-process isolation and forked."""
        self.hermetic_layout = _layout.Watched()
        self._availability: _probe.Availability | None = None
        self._mount_watch: _mountinfo.Watch | None = None
        self._no_inprocess: tuple[str | None] | None = None

    def availability(self) -> _probe.Availability:
        """How tests can be isolated here: probed once (an OSError is not kept)."""
        if self._availability is None:
            self._availability = _probe.probe(self.settings.userns)
        return self._availability

    def mount_watch(self) -> _mountinfo.Watch:
        """pytest's own mount table, to tell a test that reached it."""
        if self._mount_watch is None:
            self._mount_watch = _mountinfo.Watch()
        return self._mount_watch

    def why_not_in_process(self) -> str | None:
        """Why a thread of this process cannot isolate a test, or None; found out once."""
        if self._no_inprocess is None:
            reason = _probe.why_not_in_process(self.availability(), self.session_failure)
            self._no_inprocess = (reason,)
        return self._no_inprocess[0]

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        try:
            availability = self.availability()
        except OSError as error:
            return [f"mountns: could not find out how to isolate tests: {error}"]
        if availability.available:
            state = f"available ({availability.how})"
        else:
            state = f"unavailable: {availability.how}"
        mode = self._mode_line() if availability.available else ""
        propagation = _mountinfo.root_propagation()
        lines = [f"mountns: isolation {state}{mode}; / propagation: {propagation}"]
        hermetic = self.settings.hermetic
        if availability.available and hermetic != "off":
            lines.append(
                f"mountns: hermetic ({hermetic}): every writable file system of each isolated "
                "test behind a throwaway overlay"
                + (
                    " (read-only, and overlays where you write)"
                    if availability.only_own_ids
                    else ""
                )
            )
        if self.session_failure is not None and self.settings.mode == "fork":
            lines.append(f"mountns: no user namespace for the session: {self.session_failure}")
        if availability.available and not availability.user_namespace and availability.only_own_ids:
            lines.append(
                f"mountns: the whole run is in one user namespace, which maps uid {os.getuid()} "
                f"and gid {os.getgid()} only: other users' files show as owned by the overflow "
                "id (nobody), setuid programs (sudo) gain nothing, the host's later mounts show, "
                "and the programs tests start are in it too"
            )
        return lines

    def _mode_line(self) -> str:
        """Which runner isolated tests get; where in-process was asked for and cannot be, why."""
        if self.settings.mode == "fork":
            return "; mode fork"
        reason = self.why_not_in_process()
        if reason is not None:
            return f"; mode fork, as inprocess is unavailable: {reason}"
        if self.settings.timeout is not None:
            return "; mode fork, as the session's timeout (mountns_timeout) needs a forked child"
        return "; mode inprocess (tests with a timeout fork)"

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Where tests asked for in-process isolation and forked instead, say so once, and why."""
        if self.forked_instead:
            terminalreporter.write_line(
                f"mountns: {self.forked_instead} test(s) asked for in-process isolation and "
                f"forked instead: {self.why_not_in_process()}"
            )


_state_key = pytest.StashKey[SessionState]()


def start(config: pytest.Config, settings: Settings) -> SessionState:
    """The session's state, registered; the session's user namespace entered where wanted."""
    state = SessionState(settings, _start_session(config, settings.userns, settings.mode))
    config.stash[_state_key] = state
    config.pluginmanager.register(state, PLUGIN_NAME)
    return state


def of(config: pytest.Config) -> SessionState:
    return config.stash[_state_key]


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
