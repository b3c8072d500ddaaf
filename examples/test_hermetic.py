"""Hermetic tests: whatever the code writes, anywhere, lands in a throwaway layer.

``hermetic=True`` puts every writable file system the test sees behind a
copy-on-write overlay: the test reads the real files, and its writes (and those
of the programs it starts) vanish with it. ``mountns.writes()`` lists them, for
a test that asserts on what the code under test wrote; ``--mountns-hermetic=report``
lists them for every test after the run.

As a normal user the plugin overlays the places a user writes to (home, the
temporary directories, the working directory) and makes the rest read-only;
the test below writes to the home directory, which works either way.

Run: python -m pytest examples/test_hermetic.py -p no:cacheprovider
"""

import os
from pathlib import Path

import pytest

SETTINGS = Path.home() / ".config" / "pytest-mountns-example" / "settings.ini"


def save_settings(theme):
    """The "application": writes its settings to the user's home, as many tools do."""
    SETTINGS.parent.mkdir(parents=True, exist_ok=True)
    SETTINGS.write_text(f"theme = {theme}\n")


@pytest.mark.mountns(hermetic=True)
def test_saving_settings_writes_one_file_in_home(mountns):
    # The guard: "/" is an overlay (as root), or the home directory is one.
    covered = {entry.mountpoint for entry in mountns.mounts() if entry.fstype == "overlay"}
    assert covered & {"/", os.path.realpath(Path.home())}, covered
    save_settings("dark")
    assert SETTINGS.read_text() == "theme = dark\n"
    written = {(write.path, write.change) for write in mountns.writes()}
    assert (str(SETTINGS), "created") in written, written
