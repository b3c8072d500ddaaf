"""The hook pytest-mountns adds: data sent from an isolated test, back in pytest's process."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_mountns_output(item: pytest.Item, output: dict[str, Any]) -> None:
    """Called in pytest's process after an isolated test, with what was put in
    ``pytest_mountns.output(item)`` while it ran, if anything was.

    In fork mode the test ran in a child: the dict was pickled there and this is
    the copy. In-process it is the dict itself. A plugin that aggregates per-test
    data in pytest's process (results for a session-end report, say) puts its
    data there during the test and takes it here, the same way in both modes.
    """
