"""Wider-scoped fixtures run once, in pytest's process; function fixtures run in the child."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._helpers import own_tmp

pytestmark = pytest.mark.both_modes


@pytest.mark.fork_only(reason="a forked child keeps its Python state; see test_inprocess")
def test_wider_scopes_set_up_and_torn_down_once_in_the_parent(
    pytester: pytest.Pytester,
) -> None:
    log = pytester.path / "log.txt"
    pytester.makeconftest(
        f"""
import os, pytest

def record(event):
    with open({str(log)!r}, "a") as f:
        f.write(f"{{event}} {{os.getpid()}}\\n")

@pytest.fixture(scope="session")
def session_value():
    record("session-setup")
    yield ["original"]
    record("session-teardown")

@pytest.fixture(scope="module")
def module_value(session_value):
    record("module-setup")
    yield
    record("module-teardown")

@pytest.fixture
def function_value(module_value):
    record("function-setup")
    yield
    record("function-teardown")
"""
    )
    body = """
import pytest

@pytest.mark.mountns
def test_isolated_mutates(session_value, function_value):
    session_value.append("changed in the child")

def test_plain(session_value, function_value):
    assert session_value == ["original"]

@pytest.mark.mountns
class TestIsolated:
    def test_method(self, session_value, function_value):
        assert session_value == ["original"]
"""
    pytester.makepyfile(test_one=body, test_two=body)
    pytester.runpytest().assert_outcomes(passed=6)
    events = [line.split() for line in log.read_text().splitlines()]
    pytest_pid = str(os.getpid())
    in_parent = [event for event, pid in events if pid == pytest_pid]
    assert in_parent == [
        "session-setup",
        "module-setup",
        "function-setup",  # test_plain, the only unisolated test of each module
        "function-teardown",
        "module-teardown",
        "module-setup",
        "function-setup",
        "function-teardown",
        "module-teardown",
        "session-teardown",
    ]
    in_children = [(event, pid) for event, pid in events if pid != pytest_pid]
    assert [event for event, _ in in_children] == ["function-setup", "function-teardown"] * 4
    assert len({pid for _, pid in in_children}) == 4


def test_module_teardown_error_lands_on_the_last_test_as_without_isolation(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.fixture(scope="module")
def breaks_at_teardown():
    yield
    raise RuntimeError("module teardown failed")

def test_first(breaks_at_teardown): pass
def test_last(breaks_at_teardown): pass
"""
    )
    for args in ((), ("--mountns-all",)):
        reports = pytester.inline_run(*args).getreports("pytest_runtest_logreport")
        failed = [(r.nodeid.split("::")[1], r.when) for r in reports if r.failed]
        assert failed == [("test_last", "teardown")], args


def test_skip_marks_set_up_no_fixture(pytester: pytest.Pytester) -> None:
    log = pytester.path / "log.txt"
    pytester.makepyfile(
        f"""
import pytest

@pytest.fixture(scope="session")
def expensive():
    open({str(log)!r}, "a").write("set up\\n")

@pytest.mark.mountns
@pytest.mark.skipif(True, reason="not here")
def test_skipped(expensive): pass

@pytest.mark.mountns
@pytest.mark.xfail(run=False)
def test_not_run(expensive): pass
"""
    )
    pytester.runpytest().assert_outcomes(skipped=1, xfailed=1)
    assert not log.exists()


@pytest.mark.parametrize("unisolated_first", [True, False])
def test_tmp_path_works_under_a_tmpfs_over_tmp(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, unisolated_first: bool
) -> None:
    tmp, basetemp = own_tmp(pytester, monkeypatch)
    pytester.makepyfile(
        f"""
import os, pytest

def test_a_unisolated(tmp_path):
    (tmp_path / "a").write_text("a")

@pytest.mark.mountns({tmp!r})
def test_b_isolated(tmp_path):
    assert str(tmp_path).startswith({tmp!r} + "/")
    (tmp_path / "kept").write_text("written in the namespace")
    assert os.listdir({tmp!r}) == ["basetemp"]
"""
    )
    selection = [] if unisolated_first else ["-k", "isolated and not unisolated"]
    result = pytester.runpytest(basetemp, *selection)
    result.assert_outcomes(passed=2 if unisolated_first else 1)
    [kept] = Path(tmp).glob("basetemp/*0/kept")
    assert kept.read_text() == "written in the namespace"


def test_a_target_may_be_created_by_a_wider_fixture(pytester: pytest.Pytester) -> None:
    target = pytester.path / "made-by-fixture"
    pytester.makepyfile(
        f"""
import os, pytest

@pytest.fixture(scope="module", autouse=True)
def make_target():
    os.mkdir({str(target)!r})

@pytest.mark.mountns({str(target)!r})
def test_isolated():
    assert os.listdir({str(target)!r}) == []
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_in_random_order_fixtures_set_up_and_tear_down_as_without_isolation(
    pytester: pytest.Pytester,
) -> None:
    """The order pytest-randomly would give; the fixture events must not change at all."""
    log = pytester.path / "log.txt"
    pytester.makeconftest(
        f"""
import os, random, pytest

def pytest_collection_modifyitems(items):
    random.Random(4).shuffle(items)

def record(event):
    with open({str(log)!r}, "a") as f:
        f.write(event + ("" if os.getpid() == PYTEST else " (child)") + "\\n")

PYTEST = os.getpid()

@pytest.fixture(scope="session")
def session_fixture():
    record("session up")
    yield
    record("session down")

@pytest.fixture(scope="module")
def module_fixture(session_fixture):
    record("module up")
    yield
    record("module down")

@pytest.fixture(scope="class")
def class_fixture(module_fixture):
    record("class up")
    yield
    record("class down")
"""
    )
    body = """
import pytest

class TestA:
    @pytest.mark.parametrize("i", range(3))
    def test_in_class(self, class_fixture, i):
        pass

@pytest.mark.parametrize("i", range(3))
def test_in_module(module_fixture, i):
    pass
"""
    pytester.makepyfile(test_one=body, test_two=body)

    def events(*args: str) -> list[str]:
        log.unlink(missing_ok=True)
        pytester.runpytest("-p", "no:cacheprovider", *args).assert_outcomes(passed=12)
        return log.read_text().splitlines()

    plain = events()
    assert events("--mountns-all") == plain
    assert not any("(child)" in event for event in plain)
    assert plain.count("module up") > 2  # the shuffle really interleaved the modules
