"""This file's share of the trivial tests: ``def test_<i>(): pass`` for each of its numbers.

The benchmark copies this file once per module (``--modules``) and lists in
``suite.json`` beside the copies which numbers each file holds. Each test is a
plain function of its own, with no fixture and no parameter, so a test costs
pytest as little as a test can, and what isolation adds stands out.
"""

import json
from collections.abc import Callable
from pathlib import Path


def _trivial() -> Callable[[], None]:
    def test() -> None:
        pass

    return test


def _numbers() -> list[int]:
    here = Path(__file__)
    numbers: list[int] = json.loads((here.parent / "suite.json").read_text())[here.name]
    return numbers


for _number in _numbers():
    globals()[f"test_{_number}"] = _trivial()
