"""The order pytest-randomly picks and the random state it seeds, journalled per test."""

import random
from pathlib import Path

JOURNAL = Path(__file__).with_name("journal.log")


def note(name: str) -> None:
    with JOURNAL.open("a") as journal:
        journal.write(f"{name} {random.random():.12f}\n")


def test_a():
    note("a")


def test_b():
    note("b")


def test_c():
    note("c")


def test_d():
    note("d")


def test_e():
    note("e")
