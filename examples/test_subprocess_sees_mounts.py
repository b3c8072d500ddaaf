"""Mounts made inside a test are seen by every program it runs, not only by Python.

Run: python -m pytest examples/test_subprocess_sees_mounts.py
"""

import os
import subprocess

import pytest

OS_RELEASE = "/etc/os-release"


def run(*command):
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


# pyfakefs fakes the file system by patching Python's own modules (open, os,
# pathlib...) in the test's process: a subprocess is a fresh program that asks
# the kernel, and finds the real files. The `mountns` fixture changes the
# kernel's answer instead, for the test's whole mount namespace: a shell
# script, `ls`, a C library, all see the same thing. It mounts at once, when
# called, like monkeypatch; asking for it isolates the test, no marker needed.
def test_a_tmpfs_is_seen_by_subprocesses(mountns):
    srv = mountns.tmpfs("/srv", size="1m")  # a fresh, empty tmpfs over /srv
    # mounts() is this namespace's table, as findmnt would list it: the tmpfs
    # is there, so what follows writes into it and not into the host's /srv.
    [entry] = [mount for mount in mountns.mounts() if mount.mountpoint == "/srv"]
    assert entry.fstype == "tmpfs"
    assert "size=1024k" in entry.options  # the kernel's own spelling of 1m
    (srv / "from-python.txt").write_text("written by the test\n")
    assert run("ls", "-A", srv).split() == ["from-python.txt"]
    # ...and the other way round: what the subprocess writes, the test reads.
    run("sh", "-c", "echo written by sh > /srv/from-sh.txt")
    assert (srv / "from-sh.txt").read_text() == "written by sh\n"


@pytest.mark.skipif(not os.path.exists(OS_RELEASE), reason=f"this host has no {OS_RELEASE}")
def test_a_bound_file_is_seen_by_subprocesses(mountns, tmp_path):
    # Pretend to be another distribution, e.g. to test an install script.
    fake = tmp_path / "os-release"
    fake.write_text('ID=fedora\nVERSION_ID="40"\n')
    # /etc/os-release is usually a symlink to /usr/lib/os-release: the plugin
    # follows it, binds over the real file, and returns where it mounted.
    target = mountns.bind(fake, OS_RELEASE, readonly=True)
    assert run("sh", "-c", f". {OS_RELEASE} && echo $ID $VERSION_ID") == "fedora 40\n"
    assert str(target) in [mount.mountpoint for mount in mountns.mounts()]
