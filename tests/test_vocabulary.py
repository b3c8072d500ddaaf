"""Every mount keyword and the ``mountns`` fixture, end to end, as root and as a normal user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._helpers import outcomes, own_tmp, run_while_the_host_mounts

pytestmark = pytest.mark.both_modes

PROJECT = """
import errno, os, subprocess, pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
RESOLV = os.path.join(HERE, "etc", "resolv.conf")
SCRATCH = os.path.join(HERE, "scratch")


def read(path):
    with open(path) as f:
        return f.read()


def refused_write(path):
    with pytest.raises(OSError) as excinfo:
        with open(path, "w"):
            pass
    return excinfo.value.errno


@pytest.mark.mountns(bind={RESOLV: "fake_resolv.conf"})
def test_bind_a_file_seen_by_a_subprocess_too():
    assert read(RESOLV) == "nameserver 10.0.0.1\\n"
    cat = subprocess.run(["cat", RESOLV], capture_output=True, text=True, check=True)
    assert cat.stdout == "nameserver 10.0.0.1\\n"


@pytest.mark.mountns(ro_bind={DATA: "replacement"})
def test_ro_bind_a_directory():
    assert os.listdir(DATA) == ["x.txt"]
    assert refused_write(os.path.join(DATA, "new")) == errno.EROFS


@pytest.mark.mountns(readonly=["/"], tmpfs=[SCRATCH])
def test_read_only_root_with_a_writable_hole():
    assert refused_write(os.path.join(DATA, "stray")) == errno.EROFS
    touch = subprocess.run(["touch", os.path.join(HERE, "stray")], capture_output=True)
    assert touch.returncode != 0 and b"Read-only file system" in touch.stderr
    with open(os.path.join(SCRATCH, "fine"), "w") as f:
        f.write("the hole is writable")


@pytest.mark.mountns(hide=[DATA, RESOLV])
def test_hide_a_directory_and_a_file():
    assert os.listdir(DATA) == []
    assert os.path.isfile(RESOLV) and read(RESOLV) == ""
    assert refused_write(os.path.join(DATA, "new")) == errno.EROFS
    assert refused_write(RESOLV) == errno.EROFS


@pytest.mark.mountns(overlay=[DATA])
def test_overlay_sees_the_real_content_and_its_own_writes():
    assert read(os.path.join(DATA, "a.txt")) == "real"
    with open(os.path.join(DATA, "a.txt"), "w") as f:
        f.write("changed")
    os.remove(os.path.join(DATA, "sub", "b.txt"))
    with open(os.path.join(DATA, "new"), "w") as f:
        f.write("new")
    assert read(os.path.join(DATA, "a.txt")) == "changed"
    assert sorted(os.listdir(DATA)) == ["a.txt", "new", "sub"]
    assert os.listdir(os.path.join(DATA, "sub")) == []


@pytest.mark.mountns(tmpfs=[SCRATCH], bind={SCRATCH + "/made/inside/conf": "fake_resolv.conf"})
def test_nested_targets_are_created_inside_the_tmpfs():
    assert read(SCRATCH + "/made/inside/conf") == "nameserver 10.0.0.1\\n"


def test_the_fixture(mountns):
    assert mountns.tmpfs(SCRATCH, size="1m") == __import__("pathlib").Path(SCRATCH)
    with open(os.path.join(SCRATCH, "f"), "w") as f:
        f.write("x")
    mountns.bind("fake_resolv.conf", RESOLV, readonly=True)
    assert read(RESOLV) == "nameserver 10.0.0.1\\n"
    assert refused_write(RESOLV) == errno.EROFS
    mountns.overlay(DATA)
    with open(os.path.join(DATA, "a.txt"), "w") as f:
        f.write("changed")
    mountns.readonly(os.path.join(DATA, "sub"))
    assert refused_write(os.path.join(DATA, "sub", "c")) == errno.EROFS
    mountns.hide(os.path.join(HERE, "replacement"))
    assert os.listdir(os.path.join(HERE, "replacement")) == []
    entries = {entry.mountpoint: entry for entry in mountns.mounts()}
    assert entries[SCRATCH].fstype == "tmpfs" and "size=1024k" in entries[SCRATCH].options
    assert entries[DATA].fstype == "overlay" and entries[SCRATCH].propagation == "private"
    with pytest.raises(ValueError, match="mountns.tmpfs: tmpfs target '/proc': cannot be a mount"):
        mountns.tmpfs("/proc")
    with pytest.raises(ValueError, match="mountns.bind: bind.* source '/.*/missing': does not"):
        mountns.bind("missing", RESOLV)


def test_zz_unisolated_host_is_untouched():
    assert read(os.path.join(DATA, "a.txt")) == "real"
    assert sorted(os.listdir(DATA)) == ["a.txt", "sub"]
    assert os.listdir(os.path.join(DATA, "sub")) == ["b.txt"]
    assert read(RESOLV) == "nameserver 192.0.2.1\\n"
    assert os.listdir(SCRATCH) == []
    assert not os.path.exists(os.path.join(HERE, "stray"))
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    root = pytester.path
    os.chmod(root, 0o755)
    for directory in ("data/sub", "etc", "scratch", "replacement"):
        (root / directory).mkdir(parents=True)
    (root / "data" / "a.txt").write_text("real")
    (root / "data" / "sub" / "b.txt").write_text("b")
    (root / "etc" / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    (root / "fake_resolv.conf").write_text("nameserver 10.0.0.1\n")
    (root / "replacement" / "x.txt").write_text("x")
    pytester.makepyfile(test_vocabulary=PROJECT)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_every_keyword_as_root(pytester: pytest.Pytester, project: Path) -> None:
    before = snapshot(project)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=8)
    assert snapshot(project) == before


@pytest.mark.fork_only(reason="as a normal user in-process mode forks; test_inprocess checks that")
def test_every_keyword_in_a_user_namespace(project: Path) -> None:
    before = snapshot(project)
    command = ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--"]
    result = subprocess.run(
        [*command, sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert outcomes(result.stdout) == {"passed": 8}, result.stdout + result.stderr
    assert "user namespace as uid 65534" in result.stdout
    assert snapshot(project) == before


IS_TMPFS = """
def is_tmpfs(path):
    return any(line.split()[4] == path and " - tmpfs " in line
               for line in open("/proc/self/mountinfo"))
"""


@pytest.mark.parametrize(("propagation", "sees_it"), [("slave", True), ("private", False)])
def test_slave_propagation_lets_the_host_s_new_mounts_in(
    pytester: pytest.Pytester, propagation: str, sees_it: bool
) -> None:
    late = pytester.mkdir("late")
    ready, mounted = pytester.path / "ready", pytester.path / "mounted"
    pytester.makepyfile(
        f"""
import os, time, pytest

{IS_TMPFS}
@pytest.mark.mountns(propagation={propagation!r})
def test_waits_for_a_host_mount():
    open({str(ready)!r}, "w").close()  # in its namespace: now the host mounts
    deadline = time.monotonic() + 60  # only a bound against a hang
    while not os.path.exists({str(mounted)!r}) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert is_tmpfs({str(late)!r}) is {sees_it}
"""
    )
    result = run_while_the_host_mounts(pytester.path, ready, late, mounted)
    if sees_it:  # no leak check with slave propagation: the host's mounts are its point
        assert outcomes(result.stdout) == {"passed": 1}, result.stdout + result.stderr
    else:  # a host mount while a private test runs looks like a leak (docs/limitations.md)
        assert outcomes(result.stdout) == {"passed": 1, "errors": 1}, result.stdout
        assert f"  + {late} (tmpfs from none, shared)" in result.stdout


@pytest.mark.fork_only(reason="children forked ahead are the fork runner's")
def test_a_test_sees_the_host_s_mounts_made_while_the_test_before_it_ran(
    pytester: pytest.Pytester,
) -> None:
    """Its namespace is a copy of the host's mount table when its turn comes: a child
    forked for it ahead, in a namespace copied earlier, is not used."""
    late = pytester.mkdir("late")
    ready, mounted = pytester.path / "ready", pytester.path / "mounted"
    pytester.makepyfile(
        f"""
import os, time, pytest

{IS_TMPFS}
def namespace(pid):
    try:
        return os.stat(f"/proc/{{pid}}/ns/mnt").st_ino
    except OSError:
        return None

def wait_for(condition):
    deadline = time.monotonic() + 30  # only a bound against a hang
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)

@pytest.mark.mountns(propagation="slave")  # no leak check: the host mounts while it runs
def test_first():
    pytest_pid = os.getppid()
    own = namespace(pytest_pid)

    def another_child_in_its_namespace():
        children = open(f"/proc/{{pytest_pid}}/task/{{pytest_pid}}/children").read().split()
        return any(int(pid) != os.getpid() and namespace(pid) not in (own, None)
                   for pid in children)

    wait_for(another_child_in_its_namespace)  # the one forked ahead for test_second
    open({str(ready)!r}, "w").close()  # now the host mounts
    wait_for(lambda: os.path.exists({str(mounted)!r}))

@pytest.mark.mountns
def test_second():
    assert is_tmpfs({str(late)!r})
"""
    )
    result = run_while_the_host_mounts(pytester.path, ready, late, mounted)
    assert outcomes(result.stdout) == {"passed": 2}, result.stdout + result.stderr


def test_read_only_root_keeps_holes_at_any_depth_and_tmp_path_writable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(A hole right below ``/`` is checked in test_host_safety, in a throwaway root.)"""
    tmp, basetemp = own_tmp(pytester, monkeypatch)
    hole = str(pytester.mkdir("hole"))
    pytester.makepyfile(
        f"""
import errno, os, pytest

@pytest.mark.mountns(readonly=["/"], tmpfs=[{hole!r}])
def test_hole_in_a_read_only_root(tmp_path):
    with open({hole!r} + "/fine", "w") as f:
        f.write("writable hole")
    (tmp_path / "kept").write_text("tmp_path stays writable")
    with pytest.raises(OSError) as excinfo:
        open(os.path.join(os.getcwd(), "stray"), "w")
    assert excinfo.value.errno == errno.EROFS
    table = [line.split()[4] for line in open("/proc/self/mountinfo")]
    assert table.count("/") == 1

@pytest.mark.mountns(tmpfs={{{tmp!r}: "ro"}})
def test_read_only_tmp_keeps_tmp_path_writable(tmp_path):
    (tmp_path / "kept").write_text("x")
    with pytest.raises(OSError):
        open({tmp!r} + "/stray", "w")
"""
    )
    pytester.runpytest("-p", "no:cacheprovider", basetemp).assert_outcomes(passed=2)
    assert os.listdir(hole) == [] and os.listdir(tmp) == ["basetemp"]
