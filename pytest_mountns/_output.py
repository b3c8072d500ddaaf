"""Data from an isolated test to pytest's process, for plugins that aggregate it there.

``output(item)`` is a dict, per test and attempt. In a forked child, what is in it
after the test travels, pickled, to pytest's process, which calls the
``pytest_mountns_output`` hook (``hookspecs``) with it; in-process the hook gets
the dict itself.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

_output_key = pytest.StashKey[dict[str, Any]]()


def output(item: pytest.Item) -> dict[str, Any]:
    """The dict whose picklable contents reach ``pytest_mountns_output`` after the test."""
    if _output_key not in item.stash:
        item.stash[_output_key] = {}
    return item.stash[_output_key]


def start(item: pytest.Item) -> None:
    """Before an attempt: an empty dict, as a rerun starts afresh."""
    item.stash[_output_key] = {}


def pickled(item: pytest.Item) -> bytes | None:
    """In the child, after the test: the dict to send, or None when empty.

    Raises ``ValueError`` naming the entry that does not pickle.
    """
    found = item.stash.get(_output_key, None)
    if not found:
        return None
    try:
        return pickle.dumps(found)
    except Exception:
        for key, value in found.items():
            try:
                pickle.dumps(value)
            except Exception as error:
                raise ValueError(
                    f"mountns: pytest_mountns.output(item)[{key!r}] cannot be sent to "
                    f"pytest's process: {type(error).__name__}: {error}"
                ) from None
        raise


def deliver(item: pytest.Item, data: dict[str, Any]) -> None:
    """In pytest's process: hand it to the hook's implementations."""
    if data:
        item.ihook.pytest_mountns_output(item=item, output=data)


def unpickled(payload: bytes) -> dict[str, Any]:
    data: dict[str, Any] = pickle.loads(payload)
    return data
