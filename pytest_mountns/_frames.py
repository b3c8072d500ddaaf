"""The wire format between the forked child and pytest's process.

Each frame is a kind byte, a 4-byte length and a payload, written with one
``write`` per frame. Reports travel as JSON of ``pytest_report_to_serializable``
output; a value JSON cannot carry (in ``user_properties``, say) arrives as its
``repr``, never as a lost report.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import struct
import time
import warnings
from collections.abc import Iterator

import pytest

from . import _internals

HEADER = struct.Struct("!BI")
CHANNEL_LOST = 121
"""The child's exit status when the test closed the report pipe under it."""
MAX_SECTION = 16 << 20
"""Captured output kept per report section, in characters."""

REPORT = ord("R")
"""A phase's report (setup, call, teardown)."""
LOGGED = ord("L")
"""A report another plugin logged in the child (a subtest, say)."""
WARNINGS = ord("W")
"""The warnings the test raised, for pytest's warnings summary."""
JUNIT = ord("J")
"""What the test recorded for junitxml (attributes, suite properties)."""
EXIT = ord("X")
"""``pytest.exit()`` in the child: ``[reason, returncode]``."""
INTERRUPT = ord("K")
"""KeyboardInterrupt in the child."""
ERROR = ord("E")
"""The plugin itself failed in the child: a traceback."""
DONE = ord("D")
"""The child sent everything and is about to ``os._exit(0)``."""


class Writer:
    """The write end of the pipe; only the forked child itself may write to it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.owner = os.getpid()

    def send(self, kind: int, payload: bytes = b"") -> None:
        if os.getpid() != self.owner:
            os._exit(0)  # a process the test forked fell back into pytest: say nothing
        data = memoryview(HEADER.pack(kind, len(payload)) + payload)
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:  # the test closed or replaced the descriptor: nothing more can be said
            os._exit(CHANNEL_LOST)

    def send_report(self, kind: int, config: pytest.Config, report: pytest.TestReport) -> None:
        report.sections = [(title, bounded(content)) for title, content in report.sections]
        data = config.hook.pytest_report_to_serializable(config=config, report=report)
        self.send(kind, json.dumps(data, default=repr).encode())

    def send_warnings(self, caught: list[warnings.WarningMessage]) -> None:
        if caught:
            entries = [
                [
                    str(w.message),
                    w.category.__module__,
                    w.category.__qualname__,
                    w.filename,
                    w.lineno,
                ]
                for w in caught
            ]
            self.send(WARNINGS, json.dumps(entries).encode())


def bounded(text: str) -> str:
    """At most ``MAX_SECTION`` characters of captured output, with a visible marker past it."""
    if len(text) <= MAX_SECTION:
        return text
    dropped = len(text) - MAX_SECTION
    return f"{text[:MAX_SECTION]}\n[pytest-mountns: {dropped} more characters not kept]\n"


def read_frames(fd: int, pid: int, deadline: float | None) -> Iterator[tuple[int, bytes]]:
    """Frames from the pipe until end of file, or until the child is gone and nothing is left.

    End of file alone is not enough: a process the test forked may hold the
    write end open long after the child died. Past ``deadline`` (a
    ``time.monotonic()`` value) it raises ``TimeoutError``.
    """
    child_gone = _pidfd(pid)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if child_gone is not None:
        poller.register(child_gone, select.POLLIN)
    buffer = bytearray()
    try:
        while True:
            while len(buffer) >= HEADER.size:
                kind, length = HEADER.unpack_from(buffer)
                if len(buffer) < HEADER.size + length:
                    break
                yield kind, bytes(buffer[HEADER.size : HEADER.size + length])
                del buffer[: HEADER.size + length]
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = dict(poller.poll(None if wait is None else int(wait * 1000) + 1))
            if not ready:
                raise TimeoutError
            if fd in ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return
                buffer += chunk
            elif child_gone in ready:
                return
    finally:
        if child_gone is not None:
            os.close(child_gone)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # before Linux 5.3: end of file has to do
        return None


def load_report(config: pytest.Config, payload: bytes) -> pytest.TestReport:
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
    _internals.restore_subtest_context(report, data)
    return report


def replay_warnings(payload: bytes) -> None:
    """Warn again, here, what the child caught, so pytest's own filters and summary see it."""
    for message, module, qualname, filename, lineno in json.loads(payload):
        warnings.warn_explicit(message, _warning_class(module, qualname), filename, lineno)


def _warning_class(module: str, qualname: str) -> type[Warning]:
    try:
        found: object = importlib.import_module(module)
        for name in qualname.split("."):
            found = getattr(found, name)
    except (ImportError, AttributeError):
        return UserWarning
    return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning
