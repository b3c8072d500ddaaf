"""A test that depends on a passing one runs; one that depends on a failing one is skipped."""

import pytest


@pytest.mark.dependency()
def test_base_passes():
    assert True


@pytest.mark.dependency()
def test_base_fails():
    raise AssertionError("broken base")


@pytest.mark.dependency(depends=["test_base_passes"])
def test_needs_passing():
    assert True


@pytest.mark.dependency(depends=["test_base_fails"])
def test_needs_failing():
    assert True


@pytest.mark.dependency(depends=["test_base_passes", "test_needs_passing"])
def test_needs_chain():
    assert True
