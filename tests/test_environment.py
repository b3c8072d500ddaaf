"""A systemd-like host, where / is shared: nothing a test mounts may reach it."""

from __future__ import annotations

import os
import shlex
import sys

import pytest

from tests._helpers import outcomes, run_in_shared_root

pytestmark = pytest.mark.both_modes

HOSTILE = """
import os, subprocess, pytest

TARGET = {target!r}
SHARED = {shared!r}

@pytest.mark.mountns(TARGET)
def test_declared_tmpfs():
    open(os.path.join(TARGET, "inside"), "w").close()

@pytest.mark.mountns(SHARED + "/inner")
def test_declared_tmpfs_below_a_shared_submount():
    open(os.path.join(SHARED, "inner", "inside"), "w").close()

@pytest.mark.mountns
def test_reshares_root_then_mounts():
    subprocess.run(["mount", "--make-rshared", "/"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", TARGET], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", "/mnt"], check=True)

@pytest.mark.mountns(TARGET)
def test_unmounts_its_own_tmpfs_and_a_host_mount():
    subprocess.run(["umount", TARGET], check=True)
    subprocess.run(["umount", "-l", "/proc"], check=True)

def test_unisolated_sees_nothing():
    assert os.listdir(TARGET) == [] and os.listdir(SHARED + "/inner") == []
    assert os.path.exists("/proc/self/mountinfo")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a throwaway namespace")
def test_shared_root_host_mount_table_is_unchanged(pytester: pytest.Pytester) -> None:
    target, shared = pytester.mkdir("target"), pytester.mkdir("shared")
    pytester.makepyfile(HOSTILE.format(target=str(target), shared=str(shared)))
    pytest_command = shlex.join([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"])
    result = run_in_shared_root(
        f"mount -t tmpfs submount {shared} && mount --make-shared {shared} && mkdir {shared}/inner"
        " && findmnt -no PROPAGATION / && cat /proc/self/mountinfo > before"
        f" && {pytest_command}; cat /proc/self/mountinfo > after",
        cwd=pytester.path,
    )
    assert result.stdout.splitlines()[0] == "shared"
    assert outcomes(result.stdout) == {"passed": 5}, result.stdout + result.stderr
    assert "/ propagation: shared" in result.stdout
    before = (pytester.path / "before").read_text()
    assert (pytester.path / "after").read_text() == before
    assert os.listdir(target) == []
