"""Passing tests under --timeout=30, one with a marker it keeps, one with a marker it exceeds."""

import time

import pytest


def test_fast():
    assert sum(range(10)) == 45


@pytest.mark.timeout(10)
def test_marked_within():
    time.sleep(0.05)


@pytest.mark.timeout(0.5, method="signal")
def test_marked_exceeded():
    time.sleep(3)


def test_after_the_timeout():
    assert True
