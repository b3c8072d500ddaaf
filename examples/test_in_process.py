"""Isolate cheap tests without a fork: ``fork=False`` runs them in pytest's own process.

pytest's thread enters the test's private mount namespace for its setup, call
and teardown, then returns: a few system calls instead of a fork per test. The
mounts behave as in a forked test. What only a forked child gives is not there:
a crash ends pytest itself, what a test changes in Python's state stays, the
processes it starts are not killed, and there is no timeout. Use it for tests
that need none of that.

Without CAP_SYS_ADMIN (a normal user, isolated through a user namespace) the
plugin forks these tests instead, unless the run asks for in-process mode
(``--mountns-mode=inprocess``), which enters one user namespace for the whole
session; nothing below depends on which way a test ran. ``python -m pytest_mountns``
says whether in-process mode works here.

Run: python -m pytest examples/test_in_process.py
"""

import json
from pathlib import Path

import pytest

# Every test in this module is isolated, in pytest's own process where possible.
pytestmark = pytest.mark.mountns(fork=False)

INDEX = Path("/var/cache/myapp/index.json")


def add_to_index(key, value):
    """The "application": keeps an index in a hard-coded cache file."""
    INDEX.parent.mkdir(parents=True, exist_ok=True)
    index = json.loads(INDEX.read_text()) if INDEX.exists() else {}
    index[key] = value
    INDEX.write_text(json.dumps(index))
    return index


def tmpfs_mount_points():
    """The tmpfs mount points in this thread's namespace (a namespace is a thread's)."""
    with open("/proc/thread-self/mountinfo") as table:
        return {line.split()[4] for line in table if line.partition(" - ")[2].startswith("tmpfs ")}


# Merged with the module's marker: a tmpfs on /var/cache, and still fork=False.
@pytest.mark.mountns("/var/cache")
def test_first_entry_creates_the_index():
    # The tmpfs is there, before anything is written: without the plugin
    # (-p no:mountns) the test stops here instead of writing to /var/cache.
    assert "/var/cache" in tmpfs_mount_points()
    assert add_to_index("a", 1) == {"a": 1}
    assert INDEX.exists()


@pytest.mark.mountns("/var/cache")
def test_the_next_test_starts_from_an_empty_cache():
    # The previous test's tmpfs ended with its namespace; this one is fresh.
    assert "/var/cache" in tmpfs_mount_points()
    assert not INDEX.exists()
    assert add_to_index("b", 2) == {"b": 2}


def test_isolated_tmpfs_is_this_test_s_own(isolated_tmpfs):
    assert str(isolated_tmpfs) in tmpfs_mount_points()
    assert list(isolated_tmpfs.iterdir()) == []
    (isolated_tmpfs / "scratch").write_text("only this test sees it")
    # No tmpfs on /var/cache here: the host's own, where the tests above wrote nothing.
    assert not INDEX.exists()
