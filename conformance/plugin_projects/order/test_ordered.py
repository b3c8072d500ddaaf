"""Tests written in one order and run in another by pytest-order's markers."""

from pathlib import Path

import pytest

JOURNAL = Path(__file__).with_name("journal.log")


def note(name: str) -> None:
    with JOURNAL.open("a") as journal:
        journal.write(name + "\n")


@pytest.mark.order(3)
def test_third():
    note("third")


@pytest.mark.order(1)
def test_first():
    note("first")


@pytest.mark.order(before="test_third")
def test_before_third():
    note("before_third")


@pytest.mark.order(-1)
def test_last():
    note("last")


def test_unordered():
    note("unordered")
