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
