"""The guard that the suite never changes the host's mount table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._helpers import mount_table


@pytest.fixture(scope="session", autouse=True)
def host_mount_table_unchanged() -> Iterator[None]:
    before = mount_table()
    yield
    assert mount_table() == before, "the suite changed the host's mount table"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked ``both_modes`` runs each test under both runners, unless ``fork_only``."""
    definition = metafunc.definition
    if definition.get_closest_marker("both_modes") and not definition.get_closest_marker(
        "fork_only"
    ):
        metafunc.parametrize("runner_mode", ["fork", "inprocess"], indirect=True)


@pytest.fixture(autouse=True)
def runner_mode(request: pytest.FixtureRequest) -> str:
    """Run the inner pytest with this runner: what a test checks must hold for both."""
    mode = str(getattr(request, "param", "fork"))
    if mode != "fork":  # after pytester's own setup, which clears PYTEST_ADDOPTS
        pytester: pytest.Pytester = request.getfixturevalue("pytester")
        pytester._monkeypatch.setenv("PYTEST_ADDOPTS", f"--mountns-mode={mode}")
    return mode
