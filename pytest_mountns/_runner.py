"""Fork a child per test, stream its reports back over a pipe, report crashes.

This is the one module that touches pytest internals (the setup state stack,
the fixture request, the capture manager); they are marked ``internal`` where
used. It knows nothing of mounts: the plugin hands it an ``enter`` callable
that the child runs before the test's setup.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

import pytest

from . import _linux

Prepare = Callable[[Sequence[str]], Callable[[], None]]
"""Called in the parent once wider scopes are set up, with the paths pytest needs
to stay reachable; returns what the child calls before the test's setup."""

_HEADER = struct.Struct("!BI")
_REPORT, _EXIT, _INTERRUPT, _ERROR, _DONE = b"RXKED"
_PHASES = ("setup", "call", "teardown")
_OUTCOMES = (Exception, pytest.skip.Exception, pytest.fail.Exception)


def run_isolated(
    item: pytest.Item, nextitem: pytest.Item | None, prepare: Prepare
) -> BaseException | None:
    """Run the item's whole protocol in a forked child and log its reports here.

    When a collector or wider-scoped fixture fails to set up in the parent, or
    ``prepare`` raises, nothing of the test runs and the error is returned: the
    caller hands the item to pytest's own protocol, which reports it as it
    would without us.
    """
    try:
        enter = prepare(_setup_wider_scopes(item))
    except _OUTCOMES as error:
        return error
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    sys.stdout.flush()
    sys.stderr.flush()
    _linux.flush_c_stdio()
    read_fd, write_fd = os.pipe()
    parent_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child_main(item, nextitem, enter, write_fd, parent_pid)
    os.close(write_fd)
    try:
        _collect_child(item, nextitem, pid, read_fd)
    finally:
        _release_request(item)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return None


# --- parent side -------------------------------------------------------------


def _setup_wider_scopes(item: pytest.Item) -> list[str]:
    """Set up collectors and session/package/module/class fixtures here, once.

    The child inherits their values through fork, so they are set up and torn
    down exactly once, as without isolation. A test that its marks skip sets
    up nothing, as pytest would. Returns the paths to keep reachable in the
    child: pytest's basetemp, created here so that every child shares one.
    """
    __tracebackhide__ = True
    if _skipped_by_marks(item):
        return []
    capman = _capture_manager(item)
    if capman is not None:
        capman.resume_global_capture()  # the child's setup report collects this output
    state = item.session._setupstate  # internal
    try:
        state.setup(item.parent)  # type: ignore[arg-type]
        if not isinstance(item, pytest.Function):
            return []
        if not item._request:  # internal: re-run items, as pytest-rerunfailures does
            item._initrequest()
        request = item._request
        state.stack[item] = ([], None)  # active while its request resolves, as in setup
        try:
            for name in item.fixturenames:
                definitions = item._fixtureinfo.name2fixturedefs.get(name)  # internal
                if definitions and definitions[-1].scope != "function":
                    request.getfixturevalue(name)
            if "tmp_path_factory" in item.fixturenames:
                factory = request.getfixturevalue("tmp_path_factory")
                return [str(factory.getbasetemp())]
            return []
        finally:
            del state.stack[item]
    finally:
        if capman is not None:
            capman.suspend_global_capture(in_=False)


def _skipped_by_marks(item: pytest.Item) -> bool:
    from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks  # internal

    if evaluate_skip_marks(item) is not None:
        return True
    xfailed = evaluate_xfail_marks(item)
    return xfailed is not None and not xfailed.run


def _collect_child(item: pytest.Item, nextitem: pytest.Item | None, pid: int, fd: int) -> None:
    """Log the child's reports as they come, then reap it and fill in what it never sent."""
    received: dict[str, pytest.TestReport] = {}
    ending: tuple[int, bytes] | None = None
    started = time.time()
    try:
        with open(fd, "rb") as channel:
            for kind, payload in _read_frames(channel):
                if kind != _REPORT:
                    ending = (kind, payload)
                    if kind == _DONE:
                        break
                    continue
                report = _load_report(item.config, payload)
                received[report.when] = report
                if report.when != "teardown":
                    item.ihook.pytest_runtest_logreport(report=report)
        status = _reap(pid)
    except BaseException:
        _kill(pid)
        raise
    if ending is not None and ending[0] == _EXIT:
        reason, returncode = json.loads(ending[1])
        pytest.exit(reason, returncode)
    if ending is not None and ending[0] == _INTERRUPT:
        raise KeyboardInterrupt
    if ending is None or ending[0] != _DONE:
        detail = ending[1].decode(errors="replace") if ending is not None else ""
        _report_crash(item, received, status, detail, started)
    if item.session.shouldfail or item.session.shouldstop:
        nextitem = None
    teardown = _merge_teardown(received["teardown"], _teardown_wider_scopes(item, nextitem))
    item.ihook.pytest_runtest_logreport(report=teardown)


def _report_crash(
    item: pytest.Item,
    received: dict[str, pytest.TestReport],
    status: int,
    detail: str,
    started: float,
) -> None:
    """Fail the phase the child died in; a child that vanished never passes."""
    setup = received.get("setup")
    if setup is None:
        phase = "setup"
    elif setup.passed and "call" not in received and not item.config.option.setuponly:
        phase = "call"
    else:
        phase = "teardown"
    message = f"mountns: the isolated test process {_describe_status(status)} during {phase}"
    if detail:
        message += f"\n{detail}"
    sections = _read_leftover_output(item, phase)
    now = time.time()
    crash = _make_report(item, phase, "failed", message, sections, started, now)
    received[phase] = crash
    if phase != "teardown":  # the teardown report is logged once merged with the parent's
        item.ihook.pytest_runtest_logreport(report=crash)
        received["teardown"] = _make_report(item, "teardown", "passed", None, [], now, now)


def _describe_status(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name} (signal {-status})"
    return f"exited with status {status} without reporting"


def _read_leftover_output(item: pytest.Item, phase: str) -> list[tuple[str, str]]:
    """The output the dead child wrote since its last report: it is still in the capture."""
    capman = _capture_manager(item)
    if capman is None:
        return []
    out, err = capman.read_global_capture()
    return [
        (f"Captured {key} {phase}", text)
        for key, text in (("stdout", out), ("stderr", err))
        if text
    ]


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


def _teardown_wider_scopes(
    item: pytest.Item, nextitem: pytest.Item | None
) -> pytest.TestReport | None:
    """Tear down, here in the parent, the scopes that end with this item."""
    state = item.session._setupstate  # internal
    needed = nextitem.listchain() if nextitem is not None else []
    if list(state.stack) == needed[: len(state.stack)]:
        return None
    capman = _capture_manager(item)
    capture: contextlib.AbstractContextManager[None] = (
        capman.item_capture("teardown", item) if capman is not None else contextlib.nullcontext()
    )
    with capture:
        call = pytest.CallInfo.from_call(
            lambda: state.teardown_exact(nextitem), when="teardown", reraise=_reraised(item)
        )
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    return report


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
                ("mountns: error tearing down wider scopes", str(parent.longrepr))
            )
        else:
            child.outcome = "failed"
            child.longrepr = parent.longrepr
    return child


def _release_request(item: pytest.Item) -> None:
    """Drop the fixture values held for this item, as pytest's protocol does."""
    if isinstance(item, pytest.Function):
        item._request = False  # type: ignore[assignment]  # internal
        item.funcargs = None  # type: ignore[assignment]


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _read_frames(channel: BinaryIO) -> Iterator[tuple[int, bytes]]:
    while True:
        header = channel.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        kind, length = _HEADER.unpack(header)
        payload = channel.read(length)
        if len(payload) < length:
            return
        yield kind, payload


def _load_report(config: pytest.Config, payload: bytes) -> pytest.TestReport:
    data = json.loads(payload)
    report: pytest.TestReport = config.hook.pytest_report_from_serializable(
        config=config, data=data
    )
    # JSON has no tuples; give back the shapes pytest and plugins unpack.
    report.location = tuple(report.location)  # type: ignore[assignment]
    report.sections = [tuple(section) for section in report.sections]  # type: ignore[misc]
    report.user_properties = [tuple(prop) for prop in report.user_properties]  # type: ignore[misc]
    if isinstance(report.longrepr, list):
        report.longrepr = tuple(report.longrepr)
    return report


def _capture_manager(item: pytest.Item) -> Any:
    return item.config.pluginmanager.getplugin("capturemanager")


def _reraised(item: pytest.Item) -> tuple[type[BaseException], ...]:
    if item.config.getoption("usepdb", False):
        return (pytest.exit.Exception,)
    return (pytest.exit.Exception, KeyboardInterrupt)


# --- child side --------------------------------------------------------------


class _Channel:
    """The write end of the report pipe; only the forked child itself may write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.owner = os.getpid()

    def send(self, kind: int, payload: bytes) -> None:
        if os.getpid() != self.owner:
            os._exit(0)  # a process the test forked fell back into pytest: say nothing
        data = memoryview(_HEADER.pack(kind, len(payload)) + payload)
        while data:
            data = data[os.write(self.fd, data) :]


def _child_main(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    enter: Callable[[], None],
    fd: int,
    parent_pid: int,
) -> None:
    """Run setup, call and teardown, send each report as it ends, and never return."""
    channel = _Channel(fd)
    try:
        _linux.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(1)
        _leave_wider_teardown_to_parent(item)
        try:
            _run_phases(item, nextitem, enter, channel)
        except pytest.exit.Exception as stop:
            _teardown_quietly(item)
            channel.send(_EXIT, json.dumps([stop.msg, stop.returncode]).encode())
        except KeyboardInterrupt:
            channel.send(_INTERRUPT, b"")
        else:
            channel.send(_DONE, b"")
    except BaseException:
        channel.send(_ERROR, traceback.format_exc().encode())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _linux.flush_c_stdio()
        os._exit(0)


def _leave_wider_teardown_to_parent(item: pytest.Item) -> None:
    """Drop the inherited finalizers of wider scopes: the parent runs them, once."""
    for finalizers, _ in item.session._setupstate.stack.values():  # internal
        finalizers.clear()


def _run_phases(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    enter: Callable[[], None],
    channel: _Channel,
) -> None:
    config = item.config
    config.pluginmanager.register(_EnterFirst(enter))

    def send(report: pytest.TestReport) -> None:
        data = config.hook.pytest_report_to_serializable(config=config, report=report)
        channel.send(_REPORT, json.dumps(data, default=repr).encode())

    report = _call_and_report(item, "setup", lambda: item.ihook.pytest_runtest_setup(item=item))
    send(report)
    if report.passed and not config.option.setuponly:
        send(_call_and_report(item, "call", lambda: item.ihook.pytest_runtest_call(item=item)))
    send(
        _call_and_report(
            item,
            "teardown",
            lambda: item.ihook.pytest_runtest_teardown(item=item, nextitem=nextitem),
        )
    )
    _teardown_quietly(item)


class _EnterFirst:
    """Enters the isolation as the first setup hook, inside pytest's capture and log wrappers.

    So a failure there is a setup error like any other, and the teardown
    hooks find what their setup halves left for them.
    """

    def __init__(self, enter: Callable[[], None]) -> None:
        self._enter = enter

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self) -> None:
        try:
            self._enter()
            return
        except OSError as error:
            message = f"mountns: could not set up the isolated namespace: {error}"
        pytest.fail(message, pytrace=False)


def _call_and_report(item: pytest.Item, when: str, run: Callable[[], None]) -> pytest.TestReport:
    call = pytest.CallInfo.from_call(run, when=when, reraise=_reraised(item))  # type: ignore[arg-type]
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    if _is_interactive(call, report):
        item.ihook.pytest_exception_interact(node=item, call=call, report=report)
    return report


def _is_interactive(call: pytest.CallInfo[None], report: pytest.TestReport) -> bool:
    import bdb

    if call.excinfo is None or hasattr(report, "wasxfail"):
        return False
    return not isinstance(call.excinfo.value, (pytest.skip.Exception, bdb.BdbQuit))


def _teardown_quietly(item: pytest.Item) -> None:
    """Tear down what the child itself set up and the last report did not cover."""
    with contextlib.suppress(BaseException):
        item.session._setupstate.teardown_exact(None)  # internal
