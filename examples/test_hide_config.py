"""Test a tool's defaults, whatever the user's own config says.

Run: python -m pytest examples/test_hide_config.py
"""

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

# A stand-in for a developer's home directory, shipped with the examples: it
# holds .config/exampletool/config.ini, which overrides both defaults.
HOME = Path(__file__).parent / "home"
DEFAULTS = {"color": "auto", "editor": "vi"}


def load_settings():
    """The code under test: defaults, overridden by ~/.config/exampletool/config.ini."""
    settings = dict(DEFAULTS)
    parser = configparser.ConfigParser()
    parser.read(Path.home() / ".config" / "exampletool" / "config.ini")  # skips a missing file
    if parser.has_section("exampletool"):
        settings.update(parser["exampletool"])
    return settings


@pytest.fixture(autouse=True)
def home(monkeypatch):
    monkeypatch.setenv("HOME", str(HOME))  # Path.home() and subprocesses read $HOME


def test_the_users_config_leaks_in():
    # Unmarked: the test sees what the user configured, so a test of the
    # defaults would pass on one machine and fail on the next.
    assert load_settings() == {"color": "never", "editor": "nano"}


# On a real machine you would write hide=[Path.home() / ".config"]: hide= needs
# an existing target (a directory, or a file), and makes a directory look
# empty and a file look empty, both read-only, in this test's namespace only.
# (If the tool must write its config, use a tmpfs instead: it is writable.)
@pytest.mark.mountns(hide=[HOME / ".config"])
def test_defaults_without_a_user_config():
    assert list((HOME / ".config").iterdir()) == []
    assert load_settings() == DEFAULTS
    # A subprocess, e.g. the tool's own command line, finds nothing either.
    script = "import os; print(os.path.exists(os.path.expanduser('~/.config/exampletool')))"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout == "False\n"


@pytest.mark.mountns(hide=[HOME / ".config" / "exampletool" / "config.ini"])
def test_defaults_with_an_empty_config_file():
    # Hiding the file alone: it is still there, empty, and the rest of
    # ~/.config stays visible.
    assert (HOME / ".config" / "exampletool" / "config.ini").read_text() == ""
    assert load_settings() == DEFAULTS


def test_the_users_config_is_untouched():
    # Unmarked again, after the hiding tests: the host's file is intact.
    assert load_settings() == {"color": "never", "editor": "nano"}
