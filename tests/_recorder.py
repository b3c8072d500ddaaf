"""Where each inner test ran: a plugin the suite loads into every inner pytest run.

An inner run (pytester, or a subprocess that keeps ``os.environ``) loads only
pytest, pytest-mountns and this plugin: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``
keeps out whatever else happens to be installed. Each pytest process and each
test that sets up fixtures writes a line to ``$MOUNTNS_RECORD``: its pid, its
parent's, its thread and its mount namespace, and what its markers asked
for. ``where_tests_ran`` then says, per test, whether it ran plain, in a
forked child of its own namespace, or in-process in a namespace of its own.
The descriptor is opened before any test: a test may mount over where the file is.

PYTEST_DONT_REWRITE: the suite imports it before inner runs load it as a plugin.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGIN_NAME = "tests._recorder"
_fd: int | None = None


def _write(entry: dict[str, object]) -> None:
    """Never an error of the test's: one that closed every descriptor is simply not recorded."""
    if _fd is not None:
        with contextlib.suppress(OSError):
            os.write(_fd, (json.dumps(entry) + "\n").encode())


def _namespace() -> int:
    """-1 where ``/proc`` is not there: a recorder must never fail a test itself."""
    try:
        return os.stat("/proc/thread-self/ns/mnt").st_ino
    except OSError:
        return -1


def pytest_configure(config: pytest.Config) -> None:
    global _fd
    path = os.environ.get("MOUNTNS_RECORD")
    if path:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        _write({"session": os.getpid(), "ns": _namespace()})


def pytest_unconfigure(config: pytest.Config) -> None:
    global _fd
    if _fd is not None:
        with contextlib.suppress(OSError):
            os.close(_fd)
        _fd = None


@pytest.fixture(autouse=True)
def _mountns_where(request: pytest.FixtureRequest) -> Iterator[None]:
    declared: bool | None = None
    for marker in reversed(list(request.node.iter_markers("mountns"))):  # farthest first
        if "timeout" in marker.kwargs:
            declared = True
        if marker.kwargs.get("fork") is not None:
            declared = bool(marker.kwargs["fork"])
    config = request.config
    active = config.pluginmanager.hasplugin("mountns")
    wants = active and (
        request.node.get_closest_marker("mountns") is not None
        or bool(config.getoption("mountns_all") or config.getini("mountns_all"))
        or not {"isolated_tmpfs", "mountns"}.isdisjoint(request.fixturenames)
    )
    _write(
        {
            "nodeid": request.node.nodeid,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "ns": _namespace(),
            "wants": wants,
            "declared_fork": declared,
            "session_timeout": active
            and bool(config.getoption("mountns_timeout") or config.getini("mountns_timeout")),
            "mode": active and (config.getoption("mountns_mode") or config.getini("mountns_mode")),
        }
    )
    yield


def where_tests_ran(path: Path) -> dict[str, str]:
    """Per test: ``plain``, ``fork`` or ``inprocess``; ``?`` for a forked child in pytest's
    own namespace, which is isolation that did not happen."""
    if not path.exists():
        return {}
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    sessions = {entry["session"]: entry["ns"] for entry in entries if "session" in entry}
    found = {}
    for entry in entries:
        if "nodeid" not in entry:
            continue
        if entry["pid"] in sessions:
            own = entry["ns"] == sessions[entry["pid"]]
            found[entry["nodeid"]] = "plain" if own else "inprocess"
        else:
            parent = sessions.get(entry["ppid"])
            found[entry["nodeid"]] = "fork" if parent not in (None, entry["ns"]) else "?"
    return found


def expected_runner(path: Path) -> dict[str, str]:
    """Per test: ``plain`` where it did not ask for isolation, else the runner that its
    markers (closest first), the session's timeout and its mode ask for."""
    found = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = json.loads(line)
        if "nodeid" not in entry:
            continue
        if not entry["wants"]:
            found[entry["nodeid"]] = "plain"
        elif entry["declared_fork"] is not None:
            found[entry["nodeid"]] = "fork" if entry["declared_fork"] else "inprocess"
        else:
            found[entry["nodeid"]] = "fork" if entry["session_timeout"] else entry["mode"]
    return found
