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
    plugin: tuple[str, ...]
    """The names the plugin is registered under (its entry point's, its module's, with
    ``-p``); the adapter applies where it is active."""
    item_state: dict[str, Callable[[], object]]
    """Item attributes its hooks set during an attempt, read here after it, with what
    they hold before the attempt (a child that dies sends none back)."""
    reruns: Callable[[pytest.Item], bool]
    """After the attempt, here: it will run the item again, so the wider scopes stay."""


ADAPTERS = (
    Adapter(
        plugin=("rerunfailures", "pytest_rerunfailures"),
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


def _registered(config: pytest.Config, names: tuple[str, ...]) -> bool:
    return any(config.pluginmanager.has_plugin(name) for name in names)


def _active(config: pytest.Config) -> tuple[Adapter, ...]:
    return tuple(adapter for adapter in ADAPTERS if _registered(config, adapter.plugin))


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
    """A plugin that gathers each test's results in pytest's process, for later tests or
    the session's end: in fork mode they are made in the child, and sent back (``_output``)."""

    plugin: tuple[str, ...]
    mark: Callable[[pytest.Item], Any]
    """In the child, before the test: where its results stand."""
    since: Callable[[pytest.Item, Any], Any]
    """In the child, after the test: what is new since the mark, picklable; falsy: nothing."""
    add: Callable[[pytest.Item, Any], None]
    """Here: add it to the plugin's own."""


def _benchmarks(item: pytest.Item) -> list[Any]:
    session = getattr(item.config, "_benchmarksession", None)
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


def _dependency_results(item: pytest.Item) -> dict[str, dict[str, Any]]:
    """pytest-dependency's outcomes so far, per node that keeps them (session to class)."""
    return {
        node.nodeid: {name: dict(status.results) for name, status in manager.results.items()}
        for node in item.listchain()
        if (manager := getattr(node, "dependencyManager", None)) is not None
    }


def _dependency_since(item: pytest.Item, before: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The managers whose outcomes the test changed, each with only the changed entries."""
    changed = {}
    for node in item.listchain():
        manager = getattr(node, "dependencyManager", None)
        if manager is None:
            continue
        earlier = before.get(node.nodeid, {})
        fresh = {
            name: status
            for name, status in manager.results.items()
            if earlier.get(name) != status.results
        }
        if fresh:
            manager_copy = copy.copy(manager)
            manager_copy.results = fresh
            changed[node.nodeid] = manager_copy
    return changed


def _dependency_add(item: pytest.Item, changed: dict[str, Any]) -> None:
    for node in item.listchain():
        shipped = changed.get(node.nodeid)
        if shipped is None:
            continue
        manager = getattr(node, "dependencyManager", None)
        if manager is None:
            node.dependencyManager = shipped  # type: ignore[attr-defined]
        else:
            manager.results.update(shipped.results)


AGGREGATORS = (
    Aggregator(
        plugin=("benchmark", "pytest_benchmark.plugin"),
        mark=lambda item: len(_benchmarks(item)),
        since=lambda item, mark: [_portable_benchmark(r) for r in _benchmarks(item)[mark:]],
        add=lambda item, results: _benchmarks(item).extend(results),
    ),
    Aggregator(
        plugin=("dependency", "pytest_dependency"),
        mark=_dependency_results,
        since=_dependency_since,
        add=_dependency_add,
    ),
)


def _aggregators(config: pytest.Config) -> tuple[Aggregator, ...]:
    return tuple(each for each in AGGREGATORS if _registered(config, each.plugin))


def marks(item: pytest.Item) -> dict[str, Any]:
    """In the child, before the test."""
    return {each.plugin[0]: each.mark(item) for each in _aggregators(item.config)}


def aggregated(item: pytest.Item, before: dict[str, Any]) -> dict[str, Any]:
    """In the child, after the test: the new results, under keys of their own."""
    found = {}
    for each in _aggregators(item.config):
        results = each.since(item, before[each.plugin[0]])
        if results:
            found[_KEY + each.plugin[0]] = results
    return found


def take_aggregated(item: pytest.Item, output: dict[str, Any]) -> None:
    """Here: give each plugin its results, and leave the rest of the output to the hook."""
    for each in _aggregators(item.config):
        results = output.pop(_KEY + each.plugin[0], None)
        if results:
            each.add(item, results)


_KEY = "pytest-mountns:"


class UnsupportedPluginWarning(pytest.PytestWarning):
    """An active plugin that does not work as without isolation, and why."""


UNSUPPORTED = {
    # registered names: (modes affected, why)
    ("flaky",): (
        "fork and inprocess",
        "its reruns do not apply to isolated tests: it patches pytest's call_and_report, "
        "which isolation does not use (pytest-rerunfailures' reruns work)",
    ),
    ("syrupy",): (
        "fork",
        "snapshots asserted in a forked child are neither written nor reported "
        "(in-process mode, or fork=False on snapshot tests, works)",
    ),
}


def warn_about_unsupported(config: pytest.Config, mode: str) -> None:
    """At configure time, once per active plugin that isolation in ``mode`` changes."""
    for names, (modes, why) in UNSUPPORTED.items():
        if _registered(config, names) and mode in modes:
            config.issue_config_time_warning(
                UnsupportedPluginWarning(f"mountns: {names[0]} ({modes} mode): {why}"),
                stacklevel=2,
            )


def _exception_info(error: BaseException) -> pytest.ExceptionInfo[BaseException]:
    return pytest.ExceptionInfo.from_exc_info((type(error), error, error.__traceback__))  # type: ignore[arg-type]
