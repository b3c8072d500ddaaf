"""One property that holds and one that fails for large integers."""

from hypothesis import given
from hypothesis import strategies as st


@given(st.lists(st.integers()))
def test_sorting_is_idempotent(values):
    assert sorted(sorted(values)) == sorted(values)


@given(st.integers())
def test_small_numbers(number):
    assert number < 1000


@given(st.text())
def test_text_round_trips(text):
    assert text.encode().decode() == text
