"""What other plugins need from an isolated attempt in fork mode: one small adapter each.

Plugins that rerun a test, first.

Such a plugin calls pytest's ``runtestprotocol`` once per attempt (each isolated:
``_internals.route_protocol``) and, between attempts, decides from attributes
its own hooks set on the item during the attempt. In fork mode those hooks ran
in the child: the attributes come back here with the reports. An adapter also
says when the plugin will run the item again, so that the module, class and
session scopes it needs are not torn down in between (as it arranges itself
for pytest's own teardown).
"""

from __future__ import annotations

import copy
import io
import pickle
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class Adapter:
    plugin: str
    """The name the plugin is registered under; the adapter applies where it is active."""
    item_state: dict[str, Callable[[], object]]
    """Item attributes its hooks set during an attempt, read here after it, with what
    they hold before the attempt (a child that dies sends none back)."""
    reruns: Callable[[pytest.Item], bool]
    """After the attempt, here: it will run the item again, so the wider scopes stay."""


ADAPTERS = (
    Adapter(
        plugin="rerunfailures",
        item_state={
            "_test_failed_statuses": dict,
            "_terminal_errors": dict,
            "_test_xfailed": dict,
            "_rerun_condition_excinfos": dict,
            "_rerun_condition_results": dict,
            "_finalizers_suspended": bool,
        },
        reruns=lambda item: bool(getattr(item, "_finalizers_suspended", False)),
    ),
)


def _active(config: pytest.Config) -> tuple[Adapter, ...]:
    return tuple(adapter for adapter in ADAPTERS if config.pluginmanager.has_plugin(adapter.plugin))


def reset_item_state(item: pytest.Item) -> None:
    """Here, before an attempt: what the plugins' hooks would set had it run nothing."""
    for adapter in _active(item.config):
        for name, initial in adapter.item_state.items():
            setattr(item, name, initial())


def item_state(item: pytest.Item) -> bytes | None:
    """In the child, after the attempt: the attributes the active plugins read afterwards."""
    state = {
        name: vars(item)[name]
        for adapter in _active(item.config)
        for name in adapter.item_state
        if name in vars(item)
    }
    if not state:
        return None
    buffer = io.BytesIO()
    _Pickler(buffer).dump(state)
    return buffer.getvalue()


def restore_item_state(item: pytest.Item, payload: bytes) -> None:
    vars(item).update(pickle.loads(payload))


def reruns(item: pytest.Item) -> bool:
    return any(adapter.reruns(item) for adapter in _active(item.config))


class _Pickler(pickle.Pickler):
    """An ``ExceptionInfo`` travels as its exception (a rerun condition looks at it);
    one that does not pickle arrives as a ``RuntimeError`` naming it."""

    def reducer_override(self, obj: object) -> Any:
        if isinstance(obj, pytest.ExceptionInfo):
            return _exception_info, (_picklable(obj.value),)
        return NotImplemented


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.dumps(error)
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


@dataclass(frozen=True)
class Aggregator:
    """A plugin that gathers each test's results in pytest's process for the session's end:
    in fork mode they are made in the child, and sent back (``_output``)."""

    plugin: str
    mark: Callable[[pytest.Config], int]
    """In the child, before the test: how many results there are so far."""
    since: Callable[[pytest.Config, int], list[object]]
    """In the child, after the test: the new ones, made picklable."""
    add: Callable[[pytest.Config, list[object]], None]
    """Here: add them to the plugin's own."""


def _benchmarks(config: pytest.Config) -> list[Any]:
    session = getattr(config, "_benchmarksession", None)
    return session.benchmarks if session is not None else []


def _portable_benchmark(result: Any) -> Any:
    """pytest-benchmark's result, without its fixture (timers, the test's function),
    of which the session's table and JSON read only ``has_error``."""
    portable = copy.copy(result)
    portable.fixture = types.SimpleNamespace(has_error=result.fixture.has_error)
    try:
        pickle.dumps(portable.cprofile_stats)
    except Exception:
        portable.cprofile_stats = None
    return portable


AGGREGATORS = (
    Aggregator(
        plugin="benchmark",
        mark=lambda config: len(_benchmarks(config)),
        since=lambda config, mark: [_portable_benchmark(r) for r in _benchmarks(config)[mark:]],
        add=lambda config, results: _benchmarks(config).extend(results),
    ),
)


def _aggregators(config: pytest.Config) -> tuple[Aggregator, ...]:
    return tuple(each for each in AGGREGATORS if config.pluginmanager.has_plugin(each.plugin))


def marks(config: pytest.Config) -> dict[str, int]:
    """In the child, before the test."""
    return {each.plugin: each.mark(config) for each in _aggregators(config)}


def aggregated(config: pytest.Config, before: dict[str, int]) -> dict[str, list[object]]:
    """In the child, after the test: the new results, under keys of their own."""
    found = {}
    for each in _aggregators(config):
        results = each.since(config, before[each.plugin])
        if results:
            found[_KEY + each.plugin] = results
    return found


def take_aggregated(config: pytest.Config, output: dict[str, Any]) -> None:
    """Here: give each plugin its results, and leave the rest of the output to the hook."""
    for each in _aggregators(config):
        results = output.pop(_KEY + each.plugin, None)
        if results:
            each.add(config, results)


_KEY = "pytest-mountns:"


def _exception_info(error: BaseException) -> pytest.ExceptionInfo[BaseException]:
    return pytest.ExceptionInfo.from_exc_info((type(error), error, error.__traceback__))  # type: ignore[arg-type]
