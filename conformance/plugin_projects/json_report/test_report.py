"""One test of each outcome the report records."""

import pytest


def test_passes():
    assert True


def test_fails():
    assert 1 == 2


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass


@pytest.mark.xfail(reason="known bug", strict=True)
def test_xfails():
    raise AssertionError("still broken")


@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")


def test_errors(broken):
    pass


def test_records_property(record_property):
    record_property("answer", 42)
