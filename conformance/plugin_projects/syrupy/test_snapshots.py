"""Snapshots of a dict, a list and two values in one test."""


def test_dict(snapshot):
    assert snapshot == {"name": "mountns", "tests": [1, 2, 3]}


def test_list(snapshot):
    assert snapshot == ["a", "b"]


def test_two_values(snapshot):
    assert snapshot == "first"
    assert snapshot == 2
