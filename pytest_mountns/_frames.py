"""The wire format between the forked child and pytest's process.

Each frame is a kind byte, a 4-byte length and a payload, written with one
``write`` per frame. Reports travel as JSON of ``pytest_report_to_serializable``
output; a value JSON cannot carry (in ``user_properties``, say) arrives as its
``repr``, never as a lost report. The common report, pytest's own class with
no failure to render and plain data only, where no plugin serializes reports
its own way, travels pickled instead: it costs a third of the JSON round trip,
in both processes.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import struct
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
PROBLEM = ord("P")
"""What the plugin could not do for the test in the child, after it ran: fails its teardown."""
OUTPUT = ord("O")
"""What the test put in ``pytest_mountns.output(item)``, pickled (``_output``)."""
ITEM_STATE = ord("S")
"""Item attributes a rerunning plugin's hooks set in the child (``_adapters``), pickled."""
EXIT = ord("X")
"""``pytest.exit()`` in the child: ``[reason, returncode]``."""
INTERRUPT = ord("K")
"""KeyboardInterrupt in the child."""
ERROR = ord("E")
"""The plugin itself failed in the child: a traceback."""
DONE = ord("D")
"""The child sent everything and is about to ``os._exit(0)``; ``?`` if it could not see
what the test left running (the test hid ``/proc``)."""


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
        pickled = _pickled(config, report)
        if pickled is not None:
            self.send(kind, pickled)
            return
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


def take_frames(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """The complete frames at the start of ``buffer``, each removed once taken."""
    while len(buffer) >= HEADER.size:
        kind, length = HEADER.unpack_from(buffer)
        if len(buffer) < HEADER.size + length:
            return
        payload = bytes(buffer[HEADER.size : HEADER.size + length])
        del buffer[: HEADER.size + length]
        yield kind, payload


_PICKLE_START = pickle.dumps(None, protocol=pickle.HIGHEST_PROTOCOL)[:1]


def _pickled(config: pytest.Config, report: pytest.TestReport) -> bytes | None:
    """The report pickled, where that gives what the serialization hooks would; else None.

    Only plain data: an object of a test's own class would make pytest's process
    import the test's modules to unpickle it, outside the namespace.
    """
    if type(report) is not pytest.TestReport or report.longrepr is not None:
        return None
    hook = config.hook
    for caller in (hook.pytest_report_to_serializable, hook.pytest_report_from_serializable):
        if not all(_internals.is_pytest_s_own(impl.plugin) for impl in caller.get_hookimpls()):
            return None  # a plugin's own format: let it have its say
    if not all(_plain(value) for value in vars(report).values()):
        return None
    return pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: object) -> bool:
    """Built-in types, not their subclasses (an enum of strings is the test's class), and
    pytest 9's ``NodeId`` of such (any other object of pytest's, a mark, may hold the
    test's own)."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if (kind.__module__, kind.__qualname__) == ("_pytest.nodeid", "NodeId"):
        return all(_plain(getattr(value, field)) for field in ("path", "names", "params"))
    if isinstance(value, (list, tuple)) and kind in (list, tuple):
        return all(_plain(element) for element in value)
    if isinstance(value, dict) and kind is dict:
        return all(type(key) is str and _plain(element) for key, element in value.items())
    return False


def load_report(config: pytest.Config, payload: bytes) -> pytest.TestReport:
    if payload[:1] == _PICKLE_START:  # JSON starts with "{"
        report: pytest.TestReport = pickle.loads(payload)
        return report
    data = json.loads(payload)
    report = config.hook.pytest_report_from_serializable(config=config, data=data)
    # JSON has no tuples; give back the shapes pytest and plugins unpack.
    report.location = tuple(report.location)  # type: ignore[assignment]
    report.sections = [tuple(section) for section in report.sections]  # type: ignore[misc]
    report.user_properties = [tuple(prop) for prop in report.user_properties]  # type: ignore[misc]
    if isinstance(report.longrepr, list):
        report.longrepr = tuple(report.longrepr)
    _internals.restore_subtest_context(report, data)
    return report


def replay_warnings(payload: bytes) -> None:
    """Warn again, here, what the child caught, for pytest's warnings summary.

    The child's filters (the test's own among them) let these through already:
    here they are only recorded, whatever this process's filters say.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("always")
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
