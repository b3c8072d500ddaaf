"""The suite's guards: the host's mount table, hermetic inner runs, and the runner really used."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._helpers import become_subreaper, end_descendants, mount_table
from tests._recorder import PLUGIN_NAME, expected_runner, where_tests_ran

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def host_mount_table_unchanged() -> Iterator[None]:
    before = mount_table()
    yield
    assert mount_table() == before, "the suite changed the host's mount table"


def pytest_configure(config: pytest.Config) -> None:
    """What an inner run leaves running is adopted by the suite, not by init: by each
    xdist worker, and by the controller too, for what a worker killed mid-test (``-x``
    stops workers after a grace) leaves behind."""
    become_subreaper()


def pytest_unconfigure(config: pytest.Config) -> None:
    end_descendants()


@pytest.fixture(scope="session", autouse=True)
def orphans_come_here() -> None:
    """In this process (an xdist worker, or the only one), orphans come here."""
    become_subreaper()


@pytest.fixture(autouse=True)
def no_process_left_behind(orphans_come_here: None) -> Iterator[None]:
    """A test ends what it started: whatever runs below the suite after it is ended,
    and fails it. (With the plugin broken, an inner test's leftovers end here too.)"""
    yield
    left = end_descendants()
    assert not left, f"the test left processes running: {left}"


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """A thread a test leaves in the suite's process makes every later fork warn
    (``ThreadsAtForkWarning``): a test ends the threads it started. The plugin's own
    come and go as it needs them."""
    before = set(threading.enumerate())
    yield
    left = [
        thread
        for thread in threading.enumerate()
        if thread not in before and not thread.name.startswith("pytest-mountns-")
    ]
    for thread in left:
        thread.join(5)
    names = [thread.name for thread in left if thread.is_alive()]
    assert not names, f"the test left threads running: {names}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``both_modes`` runs under both runners, unless ``fork_only``."""
    definition = metafunc.definition
    if definition.get_closest_marker("both_modes") and not definition.get_closest_marker(
        "fork_only"
    ):
        metafunc.parametrize("runner_mode", ["fork", "inprocess"], indirect=True)


@pytest.fixture
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the inner runs of this test write where each of their tests ran."""
    return tmp_path_factory.mktemp("records") / "records.jsonl"


@pytest.fixture(autouse=True)
def runner_mode(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, records: Path
) -> Iterator[str]:
    """Inner pytest runs load pytest-mountns and the recorder, nothing else installed, and
    use this runner. After the test, every inner test that asked for isolation must
    have had it (skipped isolation fails here), and in a ``both_modes`` test, under
    the runner it asked for (an in-process run that silently forked fails here)."""
    mode = str(getattr(request, "param", "fork"))
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS as it starts
    addopts = f"-p mountns -p {PLUGIN_NAME}"
    if mode != "fork":  # not always: a run with -p no:mountns knows no such option
        addopts += f" --mountns-mode={mode}"
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTEST_ADDOPTS", addopts)
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("MOUNTNS_RECORD", str(records))
    yield mode
    check_runners(records, exact=request.node.get_closest_marker("both_modes") is not None)


def check_runners(records: Path, exact: bool) -> None:
    """Each recorded inner test ran as asked: isolated or not, and (``exact``) the runner."""
    ran, asked = where_tests_ran(records), expected_runner(records)
    wrong = {
        nodeid: f"ran {how}, asked for {asked[nodeid]}"
        for nodeid, how in ran.items()
        if how != asked[nodeid] and (exact or "plain" in (how, asked[nodeid]) or how == "?")
    }
    assert not wrong, f"inner tests did not run as they asked: {wrong}"


class Differential:
    """The same inner project run plain (pytest-mountns not loaded) and with
    ``--mountns-all``: equal results, and every test of the isolated run isolated,
    under the runner it asked for."""

    def __init__(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, records: Path
    ) -> None:
        self._pytester = pytester
        self._monkeypatch = monkeypatch
        self._records = records

    def run(
        self, *args: str, subprocess: bool = False, timeout: float = 120
    ) -> tuple[pytest.RunResult, pytest.RunResult]:
        [plain], [isolated] = self.sessions([list(args)], subprocess=subprocess, timeout=timeout)
        return plain, isolated

    def sessions(
        self, runs: list[list[str]], subprocess: bool = False, timeout: float = 120
    ) -> tuple[list[pytest.RunResult], list[pytest.RunResult]]:
        """Runs one after the other (``--lf`` after a first run), each side from no cache."""
        plain_records = self._records.with_name("plain.jsonl")
        addopts = os.environ["PYTEST_ADDOPTS"]
        self._monkeypatch.setenv("PYTEST_ADDOPTS", f"-p {PLUGIN_NAME} -o markers=mountns")
        try:
            plain = self._side(plain_records, [], runs, subprocess, timeout)
        finally:
            self._monkeypatch.setenv("PYTEST_ADDOPTS", addopts)
        isolated = self._side(self._records, ["--mountns-all"], runs, subprocess, timeout)
        plain_ran, isolated_ran = where_tests_ran(plain_records), where_tests_ran(self._records)
        assert set(isolated_ran) == set(plain_ran), "not the same tests ran"
        assert set(isolated_ran.values()) <= {"fork", "inprocess"}, isolated_ran
        check_runners(plain_records, exact=True)
        check_runners(self._records, exact=True)
        for one, other in zip(plain, isolated, strict=True):
            assert one.parseoutcomes() == other.parseoutcomes()
            assert one.ret == other.ret
        return plain, isolated

    def _side(
        self,
        records: Path,
        extra: list[str],
        runs: list[list[str]],
        subprocess: bool,
        timeout: float,
    ) -> list[pytest.RunResult]:
        shutil.rmtree(self._pytester.path / ".pytest_cache", ignore_errors=True)
        return [self._run(records, (*extra, *args), subprocess, timeout) for args in runs]

    def _run(
        self, records: Path, args: tuple[str, ...], subprocess: bool, timeout: float
    ) -> pytest.RunResult:
        self._monkeypatch.setenv("MOUNTNS_RECORD", str(records))
        try:
            if subprocess:
                return self._pytester.runpytest_subprocess(*args, timeout=timeout)
            return self._pytester.runpytest(*args)
        finally:
            self._monkeypatch.setenv("MOUNTNS_RECORD", str(self._records))


@pytest.fixture
def differential(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, records: Path, runner_mode: str
) -> Differential:
    """Uses ``runner_mode``, so that the inner runs get its runner first."""
    return Differential(pytester, monkeypatch, records)
