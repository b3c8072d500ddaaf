"""Which tests are isolated, by which runner, with which declaration.

The marker wins over the command line, which wins over the ini file; the
closest marker wins per target.
"""

from __future__ import annotations

import unittest
from collections.abc import Iterable

import pytest

from . import _spec, _state
from ._spec import DeclarationError


def wants_isolation(item: pytest.Item) -> bool:
    return (
        _state.of(item.config).settings.isolate_all
        or item.get_closest_marker("mountns") is not None
        or not {"isolated_tmpfs", "mountns"}.isdisjoint(getattr(item, "fixturenames", ()))
    )


def declaration(item: pytest.Item) -> _spec.Declaration:
    """Parse and merge the item's markers: the closest one wins per target."""
    merged = _merged(item, item.iter_markers("mountns"))
    _check_class_setup(item)
    return merged


def declaration_failure(item: pytest.Item, error: DeclarationError) -> BaseException:
    return pytest.fail.Exception(f"{item.nodeid}: @pytest.mark.mountns {error}", pytrace=False)


def runs_in_process(item: pytest.Item, declared: _spec.Declaration) -> bool:
    state = _state.of(item.config)
    return wants_in_process(item, declared) and state.why_not_in_process() is None


def wants_in_process(item: pytest.Item, declared: _spec.Declaration) -> bool:
    """Whether the marker, else the option, else the ini file asks for the in-process runner.

    A timeout forks, as only a child can be stopped when it overruns: the
    marker's always (with ``fork=False`` it is a declaration error), the
    session's unless the marker says ``fork=False``, which is closer.
    """
    settings = _state.of(item.config).settings
    if declared.timeout is not None:
        return False
    if declared.fork is None:
        return settings.mode == "inprocess" and settings.timeout is None
    return not declared.fork


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
