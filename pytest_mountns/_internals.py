"""Every use of pytest's private API, in one module, tested against pytest 8.3 to 9.x
(``tests/test_internals.py`` has a canary for each).

Forking a test at the right point needs what pytest has no public API for:
taking the place of ``runtestprotocol`` (so that whoever drives the protocol,
pytest or a plugin that reruns, gets each run isolated), setting up an item's
collectors and wider-scoped fixtures without its own setup, the setup state's
finalizer stack, the capture manager's global capture, the evaluation of skip
marks, when the debugger starts; and, from pluggy, turning off hook
implementations in the child.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from _pytest import runner as _pytest_runner
from _pytest.fixtures import TopRequest
from _pytest.junitxml import xml_key
from _pytest.runner import check_interactive_exception as check_interactive_exception
from _pytest.runner import show_test_item as _show_test_item
from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

SETUP_FAILURES = (Exception, pytest.skip.Exception, pytest.fail.Exception)
"""What a failing setup raises: pytest's outcomes (not BaseException) and every Exception."""


def setup_wider_scopes(item: pytest.Item) -> str | None:
    """Set up collectors and session/package/module/class fixtures, as pytest's setup would.

    Nothing when the item's skip or ``xfail(run=False)`` marks apply: pytest
    sets up no fixture then. Their output stays in the global capture, for the
    setup report. Returns pytest's basetemp when the item will use it, created
    now so that every child shares the one basetemp.
    """
    __tracebackhide__ = True
    if _skipped_by_marks(item):
        return None
    wider = _wider_fixtures(item)
    if _already_set_up(item, wider):
        factory = wider.get("tmp_path_factory")
        return None if factory is None else str(factory.cached_result[0].getbasetemp())
    capman = _capture_manager(item)
    if capman is not None:
        capman.resume_global_capture()
    state = item.session._setupstate
    try:
        state.setup(item.parent)  # type: ignore[arg-type]
        fixtureinfo = getattr(item, "_fixtureinfo", None)  # Function and DoctestItem have one
        if fixtureinfo is None:
            return None
        # A request of our own, so the item's stays fresh for its setup in the child;
        # the fixture definitions cache the values the child then finds.
        request = TopRequest(item, _ispytest=True)  # type: ignore[arg-type]
        state.stack[item] = ([], None)  # active while the request resolves, as in setup
        try:
            for name in fixtureinfo.names_closure:
                definitions = fixtureinfo.name2fixturedefs.get(name)
                if definitions and definitions[-1].scope != "function":
                    request.getfixturevalue(name)
            if "tmp_path_factory" in fixtureinfo.names_closure:
                return str(request.getfixturevalue("tmp_path_factory").getbasetemp())
            return None
        finally:
            del state.stack[item]
    finally:
        if capman is not None:
            capman.suspend_global_capture(in_=False)


def forget_basetemp_made_inside(config: pytest.Config) -> None:
    """In-process: drop the basetemp pytest made in a test's namespace, unless it is on the host.

    pytest keeps the path for the session; made under a tmpfs, it would vanish
    with the test, and every later ``tmp_path`` would fail.
    """
    factory = getattr(config, "_tmp_path_factory", None)  # None: the tmpdir plugin is off
    made = getattr(factory, "_basetemp", None)
    if made is not None and not os.path.isdir(made):
        factory._basetemp = None  # type: ignore[union-attr]


def _already_set_up(item: pytest.Item, wider: dict[str, Any]) -> bool:
    """The common case, found cheaply: the test before set up everything this one needs.

    Its collectors are on the stack, every wider fixture holds a value (not an
    error), and none is parametrized, so no value can be for another param.
    """
    state = item.session._setupstate
    if list(state.stack) != item.listchain()[:-1]:
        return False
    params = getattr(getattr(item, "callspec", None), "params", {})
    return all(
        name not in params
        and definition.cached_result is not None
        and definition.cached_result[2] is None
        for name, definition in wider.items()
    )


_SHOW_ADDS_SPACE = "add_space" in inspect.signature(_show_test_item).parameters


def show_test_item(item: pytest.Item) -> None:
    """``--setup-show``'s line for the test itself; pytest 9 ends it with a space."""
    show: Any = _show_test_item  # its signature differs between pytest 8 and 9
    if _SHOW_ADDS_SPACE:
        show(item, add_space=not item.config.getoption("setuponly", False))
    else:
        show(item)


Protocol = Callable[[pytest.Item, bool, "pytest.Item | None"], list[pytest.TestReport]]
"""``runtestprotocol(item, log, nextitem)``: one run of an item's setup, call and teardown."""

_pytest_s_protocol: Protocol = _pytest_runner.runtestprotocol
_protocol_key = pytest.StashKey[Protocol]()
_sessions_routed = 0


def route_protocol(config: pytest.Config, protocol: Protocol) -> None:
    """Make every call of pytest's ``runtestprotocol`` for this session's items call ``protocol``.

    pytest's own ``pytest_runtest_protocol`` calls it once per test; a plugin
    that reruns a test (pytest-rerunfailures) imports it and calls it once per
    attempt. Replacing it wherever it was imported, rather than owning the hook,
    isolates each attempt and leaves the driving to whoever drives. Items of
    other sessions (pytester's in-process runs) still get pytest's own.
    """
    global _sessions_routed
    config.stash[_protocol_key] = protocol
    if _sessions_routed == 0:
        _replace_everywhere(_pytest_s_protocol, _routed_protocol)
    _sessions_routed += 1


def unroute_protocol(config: pytest.Config) -> None:
    global _sessions_routed
    if config.stash.get(_protocol_key, None) is None:
        return
    del config.stash[_protocol_key]
    _sessions_routed -= 1
    if _sessions_routed == 0:
        _replace_everywhere(_routed_protocol, _pytest_s_protocol)


def _replace_everywhere(old: object, new: object) -> None:
    """In every loaded module that holds ``old`` as ``runtestprotocol``, read from its
    namespace: no ``getattr``, which would run a lazy module's own ``__getattr__``, and
    nothing but modules (some packages put other objects in ``sys.modules``)."""
    for module in list(sys.modules.values()):
        if isinstance(module, ModuleType) and module.__dict__.get("runtestprotocol") is old:
            module.__dict__["runtestprotocol"] = new


def _routed_protocol(
    item: pytest.Item, log: bool = True, nextitem: pytest.Item | None = None
) -> list[pytest.TestReport]:
    protocol = item.config.stash.get(_protocol_key, None)
    if protocol is None:
        return run_pytest_s_protocol(item, log, nextitem)
    return protocol(item, log, nextitem)


def run_pytest_s_protocol(
    item: pytest.Item, log: bool, nextitem: pytest.Item | None
) -> list[pytest.TestReport]:
    """pytest's own setup, call and teardown, unisolated."""
    return _pytest_s_protocol(item, log, nextitem)


_KNOWN_PROTOCOL_WRAPPERS = {"faulthandler", "unittest", "timeout", "assertion", "warnings"}
"""Plugins whose pytest_runtest_protocol wrappers set nothing a spare child would miss:
the warning filters and the alarm are handed over, the assertion hooks are the same."""


def next_shares_state(item: pytest.Item, nextitem: pytest.Item, has_basetemp: bool) -> bool:
    """Whether ``nextitem``, set up after ``item``, would find pytest as it is now.

    Same collectors, only wider fixtures ``item`` already set up (none of them
    parametrized), the same warning filter marks, only pytest's own code in
    the hooks that run in between, only known protocol wrappers around both.
    ``state_token`` checks the outcome again before a spare runs.
    """
    if nextitem.parent is not item.parent or (not has_basetemp and _uses_basetemp(nextitem)):
        return False
    hook = item.config.hook
    if any(
        not is_pytest_s_own(impl.plugin)
        for name in _BETWEEN_TESTS
        for impl in getattr(hook, name).get_hookimpls()
    ):
        return False  # a conftest or plugin may change state a spare would not see
    wrappers = hook.pytest_runtest_protocol.get_hookimpls()
    if any(
        (impl.wrapper or impl.hookwrapper) and impl.plugin_name not in _KNOWN_PROTOCOL_WRAPPERS
        for impl in wrappers
    ):
        return False
    if _filter_marks(item) != _filter_marks(nextitem):
        return False
    mine, theirs = _wider_fixtures(item), _wider_fixtures(nextitem)
    params = set(getattr(getattr(nextitem, "callspec", None), "params", {}))
    params |= set(getattr(getattr(item, "callspec", None), "params", {}))
    return set(theirs) <= set(mine) and not params & set(theirs)


@dataclass(frozen=True)
class State:
    """pytest's state as a test finds it: setup stack, wider fixture values, warning filters."""

    stack: tuple[object, ...]
    values: tuple[tuple[object, object], ...]
    marks: tuple[tuple[object, ...], ...]

    def same_as(self, other: State) -> bool:
        """Identity, not equality: a torn-down and re-created fixture is another state."""
        return (
            len(self.stack) == len(other.stack)
            and all(a is b for a, b in zip(self.stack, other.stack, strict=True))
            and len(self.values) == len(other.values)
            and all(
                a is b and x is y for (a, x), (b, y) in zip(self.values, other.values, strict=True)
            )
            and self.marks == other.marks
        )


_BETWEEN_TESTS = (
    "pytest_runtest_logreport",
    "pytest_runtest_logstart",
    "pytest_runtest_logfinish",
    "pytest_report_teststatus",
    "pytest_warning_recorded",
)
"""Hooks that run in pytest's process between a spare's fork and its go."""


def is_pytest_s_own(plugin: object) -> bool:
    """pytest's and ours: their state between tests is known (and handed over where it counts)."""
    name = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
    return name.startswith(("_pytest.", "pytest_mountns"))


def state_token(item: pytest.Item) -> State:
    return State(
        stack=tuple(item.session._setupstate.stack),
        values=tuple(
            (definition, definition.cached_result) for definition in _wider_fixtures(item).values()
        ),
        marks=_filter_marks(item),
    )


def _wider_fixtures(item: pytest.Item) -> dict[str, Any]:
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    if fixtureinfo is None:
        return {}
    found = {}
    for name in fixtureinfo.names_closure:
        definitions = fixtureinfo.name2fixturedefs.get(name)
        if definitions and definitions[-1].scope != "function":
            found[name] = definitions[-1]
    return found


def _uses_basetemp(item: pytest.Item) -> bool:
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    return fixtureinfo is not None and "tmp_path_factory" in fixtureinfo.names_closure


def _filter_marks(item: pytest.Item) -> tuple[tuple[object, ...], ...]:
    return tuple(
        (mark.args, tuple(mark.kwargs.items())) for mark in item.iter_markers("filterwarnings")
    )


def _skipped_by_marks(item: pytest.Item) -> bool:
    if evaluate_skip_marks(item) is not None:
        return True
    xfailed = evaluate_xfail_marks(item)
    return xfailed is not None and not xfailed.run


def teardown_wider_scopes(
    item: pytest.Item, nextitem: pytest.Item | None, reraise: tuple[type[BaseException], ...]
) -> pytest.TestReport | None:
    """Tear down the scopes that end with this item, as pytest's teardown would."""
    state = item.session._setupstate
    needed = nextitem.listchain() if nextitem is not None else []
    if list(state.stack) == needed[: len(state.stack)]:
        return None
    capman = _capture_manager(item)
    capture: contextlib.AbstractContextManager[None] = (
        capman.item_capture("teardown", item) if capman is not None else contextlib.nullcontext()
    )
    with capture:
        call = pytest.CallInfo.from_call(
            lambda: state.teardown_exact(nextitem), when="teardown", reraise=reraise
        )
    # Not the makereport hook: its implementations saw the test's own teardown (in
    # the child, or in its namespace) and keep state from it that pytest's process lacks.
    return pytest.TestReport.from_item_and_call(item, call)


def leftover_output(item: pytest.Item) -> tuple[str, str]:
    """What a dead child wrote since its last report: with fd capture it is still there."""
    capman = _capture_manager(item)
    if capman is None:
        return "", ""
    out, err = capman.read_global_capture()
    return out, err


def drop_inherited_finalizers(item: pytest.Item) -> None:
    """In the child: the wider scopes' finalizers belong to the parent, which runs them once."""
    for finalizers, _ in item.session._setupstate.stack.values():
        finalizers.clear()


def renew_request(item: pytest.Item) -> None:
    """Before the setup: a re-run item (pytest-rerunfailures) needs a fresh request."""
    if getattr(item, "_request", True) is False:
        item._initrequest()  # type: ignore[attr-defined]


def set_wider_finalizers_aside(item: pytest.Item) -> dict[Any, Any]:
    """In-process: let the item's teardown end only its own scope, inside its namespace.

    The wider scopes end afterwards, outside it, as in a forked run; their
    finalizers wait aside meanwhile.
    """
    stack = item.session._setupstate.stack
    aside = dict(stack)
    for node, (_, failure) in aside.items():
        stack[node] = ([], failure)
    return aside


def put_wider_finalizers_back(item: pytest.Item, aside: dict[Any, Any]) -> None:
    """Rebuild the wider scopes' entries, with the finalizers the test itself added to them.

    Those belong to a wider fixture the test was first to request
    (``request.getfixturevalue``); where its scope ended with the item, they ran already.
    """
    stack = item.session._setupstate.stack
    now = dict(stack)
    stack.clear()
    for node, (finalizers, failure) in aside.items():
        added = now[node][0] if node in now else []
        stack[node] = (finalizers + added, failure)


def release_request(item: pytest.Item) -> None:
    """In-process, after the teardown: drop the test's fixture values, as pytest's protocol does."""
    if hasattr(item, "_request"):
        item._request = False
        item.funcargs = None  # type: ignore[attr-defined]


def teardown_everything_quietly(item: pytest.Item) -> None:
    """Tear down what the test itself set up and no report covered (the wider scopes are aside)."""
    with contextlib.suppress(BaseException):
        item.session._setupstate.teardown_exact(None)


def silence_logreport_except(config: pytest.Config, keep: object) -> None:
    """In the child: only ``keep`` may see ``pytest_runtest_logreport`` from now on.

    The other implementations report (terminal, junitxml, xdist's channel to its
    controller): that is the parent's job, once it has the forwarded report.
    """
    for impl in config.hook.pytest_runtest_logreport.get_hookimpls():
        if impl.plugin is not keep:
            impl.function = _silent_wrapper if impl.hookwrapper or impl.wrapper else _silent  # type: ignore[misc]


def _silent(*args: object) -> None:
    return None


def _silent_wrapper(*args: object) -> Generator[None, Any, Any]:
    return (yield)


def restore_subtest_context(report: pytest.TestReport, data: dict[str, Any]) -> None:
    """Undo the second ``saferepr`` that pytest 9's SubtestContext applies on deserializing.

    Without this a subtest ``(i=1)`` would read ``(i='1')``, unlike an unforked run.
    """
    context = getattr(report, "context", None)
    serialized = data.get("_subtest.context")
    if context is not None and isinstance(serialized, dict):
        object.__setattr__(context, "kwargs", serialized["kwargs"])


def junit_mark(config: pytest.Config) -> int:
    """In the child, at its start: how many suite properties junitxml holds so far."""
    xml = config.stash.get(xml_key, None)
    return len(xml.global_properties) if xml is not None else 0


def junit_changes(config: pytest.Config, item: pytest.Item, mark: int) -> dict[str, Any] | None:
    """In the child: what ``record_xml_attribute`` and ``record_testsuite_property`` added."""
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return None
    attrs = dict(xml.node_reporter(item.nodeid).attrs)
    properties = xml.global_properties[mark:]
    return {"attrs": attrs, "properties": properties} if attrs or properties else None


def apply_junit_changes(config: pytest.Config, item: pytest.Item, changes: dict[str, Any]) -> None:
    """Here: add what the child recorded to pytest's own junitxml."""
    xml = config.stash.get(xml_key, None)
    if xml is not None:
        xml.node_reporter(item.nodeid).attrs.update(changes["attrs"])
        xml.global_properties.extend(tuple(prop) for prop in changes["properties"])


def _capture_manager(item: pytest.Item) -> Any:
    return item.config.pluginmanager.getplugin("capturemanager")
