"""The suite's one fixture: memory pytest holds for the whole session, for the memory scaling.

A fork copies the page tables of everything pytest holds; touching every page
makes the held memory real, not a promise of zero pages.
"""

import os
from collections.abc import Iterator

import pytest

HOLD_ENV = "MOUNTNS_BENCH_HOLD_MIB"
"""MiB to hold, set by the benchmark for a case (unset: none)."""


@pytest.fixture(scope="session", autouse=True)
def _held_memory() -> Iterator[bytearray]:
    """Hold ``MOUNTNS_BENCH_HOLD_MIB`` MiB of memory, every 4 KiB page touched."""
    size = int(os.environ.get(HOLD_ENV, "0")) * 1024 * 1024
    held = bytearray(size)
    held[::4096] = b"\x01" * len(range(0, size, 4096))
    yield held
