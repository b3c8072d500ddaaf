"""Why an isolated test's tmpfs never shows up outside, even when / is shared.

systemd makes / "shared": a mount made in one namespace is copied to every
peer, including namespaces created later with unshare. The plugin therefore
makes / recursively private (MS_REC|MS_PRIVATE) in the child before mounting.
Everything here runs in throwaway `unshare --mount` namespaces, so the
machine's own mount table is never touched.

Run (as root): python -m pytest examples/test_propagation.py
"""

import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs util-linux's unshare and root, to create throwaway mount namespaces",
)


def in_throwaway_namespace(commands, cwd):
    """Run shell commands in a new mount namespace whose / is shared, as on systemd.

    `unshare --mount` alone makes the copy private (its default), which cuts
    it off from the host; `--make-rshared` then links its mounts among its
    own descendants only. The namespace dies with the shell.
    """
    script = f"mount --make-rshared / && {commands} && echo MOUNTINFO && cat /proc/self/mountinfo"
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tmpfs_mount_points(mountinfo):
    points = set()
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        if after.split()[0] == "tmpfs":
            points.add(before.split()[4])
    return points


def test_isolated_tmpfs_stays_inside(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    # A separate pytest run, started inside the throwaway namespace, whose
    # isolated test mounts a tmpfs on `target` and writes into it.
    inner = tmp_path / "test_inner.py"
    inner.write_text(
        textwrap.dedent(f"""\
        import pytest

        @pytest.mark.mountns({str(target)!r})
        def test_write_into_tmpfs():
            open({str(target / "file")!r}, "w").close()
        """)
    )
    args = [sys.executable, "-m", "pytest", str(inner), "-p", "no:cacheprovider", "-q"]
    pytest_cmd = shlex.join(args)
    result = in_throwaway_namespace(pytest_cmd, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    output, _, mountinfo = result.stdout.partition("MOUNTINFO\n")
    assert "1 passed" in output
    # Read after the inner pytest finished, in the (shared) namespace it ran in.
    assert str(target) not in tmpfs_mount_points(mountinfo)
    assert not (target / "file").exists()


@pytest.mark.parametrize(("propagation", "leaks"), [("unchanged", True), ("private", False)])
def test_skipping_make_private_leaks_the_mount(tmp_path, propagation, leaks):
    # A child namespace that keeps / shared ("unchanged") mounts a tmpfs and
    # exits. Its mount was propagated to the outer namespace and outlives it.
    # With "private", what the plugin does, nothing comes out.
    child = f"unshare --mount --propagation={propagation}"
    mount = f"{child} mount -t tmpfs none {shlex.quote(str(tmp_path))}"
    result = in_throwaway_namespace(mount, cwd="/")
    assert result.returncode == 0, result.stderr
    mountinfo = result.stdout.partition("MOUNTINFO\n")[2]
    assert (str(tmp_path) in tmpfs_mount_points(mountinfo)) is leaks
    # Either way, the machine's own mount table never saw it.
    with open("/proc/self/mountinfo") as table:
        assert str(tmp_path) not in tmpfs_mount_points(table.read())
