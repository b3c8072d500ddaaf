"""Each isolated test runs in a mount namespace of its own, never in pytest's.

By default the test runs in a forked child; with ``--mountns-mode=inprocess``
pytest's own thread moves into the namespace and back. Either way:

Run: python -m pytest examples/test_own_namespace.py [--mountns-mode=inprocess]
"""

import os

import pytest

# Read at import time, i.e. by pytest's own thread, in pytest's namespace.
PYTEST_PID = os.getpid()
PYTEST_NAMESPACE = os.readlink("/proc/thread-self/ns/mnt")  # e.g. "mnt:[4026531841]"
# An open mountinfo keeps showing the namespace it was opened in: pytest's.
PYTEST_MOUNTINFO = os.open("/proc/thread-self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)


def namespace_of_this_test():
    return os.readlink("/proc/thread-self/ns/mnt")


def mount_points(fd=None):
    """Mount point -> file system type, from this test's mountinfo, or from an open one."""
    if fd is None:
        with open("/proc/thread-self/mountinfo") as table:
            text = table.read()
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        text = b"".join(iter(lambda: os.read(fd, 65536), b"")).decode()
    points = {}
    for line in text.splitlines():
        before, _, after = line.partition(" - ")
        points[before.split()[4]] = after.split()[0]
    return points


def test_unmarked_test_shares_pytests_namespace(pytestconfig):
    if pytestconfig.getoption("mountns_all") or pytestconfig.getini("mountns_all"):
        pytest.skip("--mountns-all (or ini mountns_all) isolates unmarked tests too")
    # No marker: the test runs in pytest's own process and namespace, as usual.
    assert os.getpid() == PYTEST_PID
    assert namespace_of_this_test() == PYTEST_NAMESPACE


@pytest.mark.mountns  # bare: no tmpfs, just a private namespace
def test_marked_test_has_its_own_namespace():
    assert namespace_of_this_test() != PYTEST_NAMESPACE


def test_isolated_tmpfs_is_fresh_and_private(isolated_tmpfs):
    # Asking for the fixture isolates the test, no marker needed. Our
    # namespace lists it as a tmpfs; pytest's does not.
    assert mount_points()[str(isolated_tmpfs)] == "tmpfs"
    assert str(isolated_tmpfs) not in mount_points(PYTEST_MOUNTINFO)
    assert list(isolated_tmpfs.iterdir()) == []
    (isolated_tmpfs / "data.bin").write_bytes(b"\0" * 4096)
