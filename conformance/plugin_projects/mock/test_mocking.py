"""mocker.patch, patch.object and spy, each undone before the next test."""

import os

import pytest


class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"


def test_patch_function(mocker):
    mocker.patch("os.getcwd", return_value="/nowhere")
    assert os.getcwd() == "/nowhere"


def test_patch_undone():
    assert os.getcwd() != "/nowhere"


def test_patch_object_and_spy(mocker):
    spy = mocker.spy(Greeter, "greet")
    assert Greeter().greet("you") == "hello you"
    spy.assert_called_once()
    mocker.patch.object(Greeter, "greet", return_value="patched")
    assert Greeter().greet("you") == "patched"


def test_mock_assertion_fails(mocker):
    stub = mocker.stub(name="callback")
    stub(1)
    with pytest.raises(AssertionError):
        stub.assert_called_once_with(2)
    stub.assert_called_once_with(3)
