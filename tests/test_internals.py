"""Canaries: each private pytest or pluggy touch point of ``_internals``, as it uses it.

When a pytest release changes one, the test that fails names what changed, long
before a user's suite misbehaves. Run against every pytest the pyproject allows (CI).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pluggy
import pytest
from _pytest import runner as pytest_runner
from _pytest.fixtures import TopRequest
from _pytest.junitxml import LogXML, xml_key
from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

from pytest_mountns import _internals

CANARY = """
import pytest

@pytest.fixture(scope="module")
def wide():
    return "wide"

@pytest.mark.skipif(False, reason="never")
def test_one(wide, tmp_path):
    pass
"""


@pytest.fixture
def item(pytester: pytest.Pytester) -> Iterator[pytest.Item]:
    """A collected item (its session over: what is checked here lives on the objects)."""
    pytester.makepyfile(CANARY)
    items, _ = pytester.inline_genitems()
    yield items[0]


def test_runtestprotocol_takes_item_log_nextitem() -> None:
    parameters = list(inspect.signature(pytest_runner.runtestprotocol).parameters)
    assert parameters == ["item", "log", "nextitem"], (
        "pytest changed runtestprotocol's signature: _internals.route_protocol replaces it"
    )


def test_pytest_s_protocol_calls_runtestprotocol_through_its_module() -> None:
    """Replacing the module's name must reach pytest's own protocol hook."""
    source = inspect.getsource(pytest_runner.pytest_runtest_protocol)
    assert "runtestprotocol(item, nextitem=nextitem)" in source, (
        "pytest's pytest_runtest_protocol no longer calls runtestprotocol by name"
    )


def test_check_interactive_exception_takes_call_and_report() -> None:
    parameters = list(inspect.signature(pytest_runner.check_interactive_exception).parameters)
    assert parameters == ["call", "report"]


def test_show_test_item_takes_the_item() -> None:
    parameters = list(inspect.signature(pytest_runner.show_test_item).parameters)
    assert parameters[0] == "item" and set(parameters[1:]) <= {"add_space"}


def test_skip_and_xfail_marks_are_evaluated_from_the_item(item: pytest.Item) -> None:
    assert evaluate_skip_marks(item) is None
    assert evaluate_xfail_marks(item) is None


def test_the_setup_state_is_a_stack_of_nodes_with_finalizers_and_failure(
    item: pytest.Item,
) -> None:
    state = item.session._setupstate
    state.setup(item.parent)  # type: ignore[arg-type]
    try:
        assert list(state.stack) == item.listchain()[:-1]
        finalizers, failure = next(iter(state.stack.values()))
        assert isinstance(finalizers, list) and failure is None
    finally:
        state.teardown_exact(None)
    assert not state.stack


def test_a_top_request_resolves_a_wider_fixture_and_caches_it(item: pytest.Item) -> None:
    fixtureinfo = item._fixtureinfo  # type: ignore[attr-defined]
    assert {"wide", "tmp_path", "request"} <= set(fixtureinfo.names_closure)
    definition = fixtureinfo.name2fixturedefs["wide"][-1]
    assert definition.scope == "module"
    state = item.session._setupstate
    state.setup(item.parent)  # type: ignore[arg-type]
    state.stack[item] = ([], None)
    try:
        request = TopRequest(item, _ispytest=True)  # type: ignore[arg-type]
        assert request.getfixturevalue("wide") == "wide"
        value, _, error = definition.cached_result
        assert (value, error) == ("wide", None)
    finally:
        del state.stack[item]
        state.teardown_exact(None)


def test_an_item_s_request_can_be_renewed_and_released(item: pytest.Item) -> None:
    assert item._request  # type: ignore[attr-defined]
    item._request = False  # type: ignore[attr-defined]
    item.funcargs = None  # type: ignore[attr-defined]
    item._initrequest()  # type: ignore[attr-defined]
    assert item._request and item.funcargs == {}  # type: ignore[attr-defined]


def test_the_basetemp_is_kept_on_the_config_s_factory(pytestconfig: pytest.Config) -> None:
    """This suite's own config: the inner session's is unconfigured by now."""
    factory = pytestconfig._tmp_path_factory  # type: ignore[attr-defined]
    assert isinstance(factory, pytest.TempPathFactory)
    assert hasattr(factory, "_basetemp"), "TempPathFactory._basetemp is gone"


def test_the_capture_manager_has_what_the_runner_calls(item: pytest.Item) -> None:
    capman = item.config.pluginmanager.getplugin("capturemanager")
    for method in ("resume_global_capture", "suspend_global_capture", "read_global_capture"):
        assert callable(getattr(capman, method, None)), f"CaptureManager.{method} is gone"
    assert "in_" in inspect.signature(capman.suspend_global_capture).parameters
    assert list(inspect.signature(capman.item_capture).parameters) == ["when", "item"]


def test_junitxml_keeps_node_attributes_and_suite_properties(
    pytester: pytest.Pytester, item: pytest.Item
) -> None:
    xml = LogXML(str(pytester.path / "junit.xml"), None)
    reporter = xml.node_reporter(item.nodeid)
    reporter.attrs["extra"] = "1"
    assert xml.node_reporter(item.nodeid).attrs["extra"] == "1"
    assert isinstance(xml.global_properties, list)
    assert isinstance(xml_key, pytest.StashKey)


def test_pluggy_hook_implementations_expose_what_silencing_uses(item: pytest.Item) -> None:
    for impl in item.config.hook.pytest_runtest_logreport.get_hookimpls():
        assert isinstance(impl, pluggy.HookImpl)
        for attribute in ("function", "plugin", "plugin_name", "wrapper", "hookwrapper"):
            assert hasattr(impl, attribute), f"pluggy's HookImpl.{attribute} is gone"


def test_a_session_puts_pytest_s_runtestprotocol_back_as_it_found_it(
    pytester: pytest.Pytester,
) -> None:
    """pytester's in-process sessions route and unroute inside this one's routing."""
    found = pytest_runner.runtestprotocol
    sessions = _internals._sessions_routed
    pytester.makepyfile("def test_one(): pass")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert pytest_runner.runtestprotocol is found
    assert _internals._sessions_routed == sessions
