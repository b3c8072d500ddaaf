"""Each isolated test runs in a forked child with a mount namespace of its own.

Run: python -m pytest examples/test_own_namespace.py
"""

import os

import pytest

# Read at import time, i.e. in the pytest process itself.
PYTEST_PID = os.getpid()
PYTEST_NAMESPACE = os.readlink("/proc/self/ns/mnt")  # e.g. "mnt:[4026531841]"


def namespace_of(pid="self"):
    return os.readlink(f"/proc/{pid}/ns/mnt")


def mount_points(pid="self"):
    """Mount point -> file system type, as /proc/<pid>/mountinfo lists them."""
    points = {}
    with open(f"/proc/{pid}/mountinfo") as table:
        for line in table:
            before, _, after = line.partition(" - ")
            points[before.split()[4]] = after.split()[0]
    return points


def test_unmarked_test_shares_pytests_namespace(pytestconfig):
    if pytestconfig.getoption("mountns_all") or pytestconfig.getini("mountns_all"):
        pytest.skip("--mountns-all (or ini mountns_all) isolates unmarked tests too")
    # No marker: the test runs in pytest's own process, as usual.
    assert os.getpid() == PYTEST_PID
    assert namespace_of() == PYTEST_NAMESPACE


@pytest.mark.mountns  # bare: no tmpfs, just a private namespace
def test_marked_test_has_its_own_namespace():
    # The plugin forked pytest: our parent is the pytest process, which stays
    # in the namespace read at import time, while we left it.
    assert os.getppid() == PYTEST_PID
    assert namespace_of() != PYTEST_NAMESPACE


def test_isolated_tmpfs_is_fresh_and_private(isolated_tmpfs):
    # Asking for the fixture isolates the test, no marker needed.
    assert list(isolated_tmpfs.iterdir()) == []
    (isolated_tmpfs / "data.bin").write_bytes(b"\0" * 4096)
    # Our namespace lists it as a tmpfs; pytest's (our parent's) does not.
    assert mount_points()[str(isolated_tmpfs)] == "tmpfs"
    assert str(isolated_tmpfs) not in mount_points(os.getppid())
