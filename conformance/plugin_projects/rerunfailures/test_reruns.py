"""Reruns by option and by marker, a module fixture around them; the marked test is last."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def note(line: str) -> None:
    with (HERE / "journal.log").open("a") as journal:
        journal.write(line + "\n")


def attempt(name: str) -> int:
    """Count this test's attempts in a file, so the count survives a forked child."""
    counter = HERE / f"attempts-{name}"
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    note(f"{name} attempt {count}")
    return count


@pytest.fixture(scope="module")
def resource():
    note("module setup")
    yield "resource"
    note("module teardown")


def test_passes(resource):
    assert resource == "resource"


def test_always_fails(resource):
    attempt("always_fails")
    assert resource == "something else"


def test_fails_once_then_passes_by_option(resource):
    assert attempt("by_option") >= 2


@pytest.mark.flaky(reruns=2)
def test_fails_twice_then_passes_by_marker(resource):
    assert attempt("by_marker") >= 3
