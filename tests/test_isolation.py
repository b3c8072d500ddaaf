"""End to end: marked tests get real tmpfs mounts in their own namespace; the host sees nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._helpers import outcomes, own_tmp

pytestmark = pytest.mark.both_modes

HELPERS = """
import os, pytest

PYTEST_NAMESPACE = os.stat("/proc/self/ns/mnt").st_ino  # read at import, in pytest itself

def mount_of(path):
    '''(fstype, mount options, super options) of the topmost mount at path, or None.'''
    found = None
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == path:
            dash = fields.index("-")
            found = (fields[dash + 1], fields[5].split(","), fields[dash + 3].split(","))
    return found

def own_namespace():
    return os.stat("/proc/self/ns/mnt").st_ino != PYTEST_NAMESPACE
"""


@pytest.fixture
def target(pytester: pytest.Pytester) -> Path:
    directory = pytester.path / "target"
    directory.mkdir()
    (directory / "host.txt").write_text("host")
    return directory


def test_marked_test_gets_a_tmpfs_and_its_own_namespace(
    pytester: pytest.Pytester, target: Path
) -> None:
    pytester.makepyfile(
        HELPERS
        + f"""
TARGET = {str(target)!r}

@pytest.mark.mountns(TARGET)
def test_marked():
    assert own_namespace()
    assert mount_of(TARGET)[0] == "tmpfs"
    assert os.listdir(TARGET) == []
    with open(os.path.join(TARGET, "scratch"), "w") as f:
        f.write("only in the namespace")

@pytest.mark.mountns
def test_bare_marker_isolates_without_mounts():
    assert own_namespace()
    assert os.listdir(TARGET) == ["host.txt"]

def test_unmarked():
    assert not own_namespace()
    assert mount_of(TARGET) is None
    assert os.listdir(TARGET) == ["host.txt"]
"""
    )
    pytester.runpytest().assert_outcomes(passed=3)
    assert os.listdir(target) == ["host.txt"]


def test_tmpfs_options_reach_the_kernel(pytester: pytest.Pytester, target: Path) -> None:
    pytester.makepyfile(
        HELPERS
        + f"""
import errno
TARGET = {str(target)!r}

@pytest.mark.mountns(tmpfs={{TARGET: "size=1m,mode=0750,uid=12,gid=34,nr_inodes=100,noexec"}})
def test_string_options():
    fstype, flags, options = mount_of(TARGET)
    assert {{"nosuid", "nodev", "noexec", "rw"}} <= set(flags)
    assert {{"size=1024k", "mode=750", "uid=12", "gid=34", "nr_inodes=100"}} <= set(options)

@pytest.mark.mountns(tmpfs={{TARGET: {{"size": "2m", "ro": True}}}})
def test_dict_options_and_read_only():
    fstype, flags, options = mount_of(TARGET)
    assert "ro" in flags and "size=2048k" in options
    with pytest.raises(OSError) as excinfo:
        open(os.path.join(TARGET, "x"), "w")
    assert excinfo.value.errno == errno.EROFS
"""
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_markers_merge_and_the_closest_wins(pytester: pytest.Pytester, target: Path) -> None:
    other = pytester.mkdir("other")
    pytester.makepyfile(
        HELPERS
        + f"""
TARGET, OTHER = {str(target)!r}, {str(other)!r}
pytestmark = pytest.mark.mountns(OTHER, tmpfs={{TARGET: "size=1m"}})

def size(path):
    return [o for o in mount_of(path)[2] if o.startswith("size=")]

def test_module_level():
    assert size(TARGET) == ["size=1024k"] and mount_of(OTHER)[0] == "tmpfs"

@pytest.mark.mountns(tmpfs={{TARGET: "size=2m"}})
class TestClass:
    def test_class_level(self):
        assert size(TARGET) == ["size=2048k"] and mount_of(OTHER)[0] == "tmpfs"

    @pytest.mark.mountns(tmpfs={{TARGET: "size=3m"}})
    def test_function_level(self):
        assert size(TARGET) == ["size=3072k"]
"""
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_parents_are_mounted_before_children(pytester: pytest.Pytester, target: Path) -> None:
    pytester.makepyfile(
        HELPERS
        + f"""
TARGET = {str(target)!r}
INNER = TARGET + "/made/inside"

@pytest.mark.mountns(INNER, TARGET)
def test_nested():
    assert mount_of(TARGET)[0] == "tmpfs" and mount_of(INNER)[0] == "tmpfs"
    assert os.listdir(TARGET) == ["made"]
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert os.listdir(target) == ["host.txt"]


def test_a_mount_over_the_cwd_is_reentered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HELPERS
        + """
@pytest.mark.mountns(os.getcwd())
def test_relative_paths_land_in_the_tmpfs():
    assert mount_of(os.getcwd())[0] == "tmpfs"
    assert os.listdir(".") == []
    with open("relative.txt", "w") as f:
        f.write("x")
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert not (pytester.path / "relative.txt").exists()


def test_isolated_tmpfs_isolates_and_leaves_nothing(pytester: pytest.Pytester) -> None:
    record = pytester.path / "record.txt"
    pytester.makeini("[pytest]\nmountns_tmpfs_size = 2m\n")
    pytester.makepyfile(
        HELPERS
        + f"""
def test_fixture(isolated_tmpfs):
    assert own_namespace()
    fstype, flags, options = mount_of(str(isolated_tmpfs))
    assert fstype == "tmpfs" and "size=2048k" in options
    assert {{"nosuid", "nodev"}} <= set(flags)
    assert list(isolated_tmpfs.iterdir()) == []
    (isolated_tmpfs / "data").write_text("x")
    with open({str(record)!r}, "w") as f:
        f.write(str(isolated_tmpfs))
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert not Path(record.read_text()).exists()


@pytest.mark.fork_only(reason="a crash kills only a forked child")
@pytest.mark.parametrize("ending", ["os._exit(1)", "os.kill(os.getpid(), 9)", "pass"])
def test_isolated_tmpfs_mountpoint_is_removed_even_after_a_crash(
    pytester: pytest.Pytester, ending: str
) -> None:
    record = pytester.path / "record.txt"
    pytester.makepyfile(
        f"""
import os

def test_fixture(isolated_tmpfs):
    with open({str(record)!r}, "w") as f:
        f.write(str(isolated_tmpfs))
    {ending}
"""
    )
    pytester.runpytest()
    assert not Path(record.read_text()).exists()


def test_isolated_tmpfs_under_a_declared_tmpfs_over_tmp(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp, basetemp = own_tmp(pytester, monkeypatch)
    pytester.makepyfile(
        HELPERS
        + f"""
@pytest.mark.mountns({tmp!r})
def test_both(isolated_tmpfs):
    assert str(isolated_tmpfs).startswith({tmp!r} + "/")
    assert mount_of({tmp!r})[0] == "tmpfs" and mount_of(str(isolated_tmpfs))[0] == "tmpfs"
    (isolated_tmpfs / "f").write_text("x")
"""
    )
    pytester.runpytest(basetemp).assert_outcomes(passed=1)


def test_isolated_tmpfs_asked_for_dynamically_says_how_to_ask(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_dynamic(request):
    request.getfixturevalue("isolated_tmpfs")
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*isolated_tmpfs must be requested as an argument*"])


def test_isolated_tmpfs_default_size_is_64m(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HELPERS
        + """
def test_fixture(isolated_tmpfs):
    assert "size=65536k" in mount_of(str(isolated_tmpfs))[2]
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_bad_tmpfs_size_ini_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmountns_tmpfs_size = banana\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*mountns_tmpfs_size='banana'*positive number*"])


@pytest.mark.parametrize("how", [["--mountns-all"], ["-o", "mountns_all=true"]])
def test_isolate_everything(pytester: pytest.Pytester, how: list[str]) -> None:
    pytester.makepyfile(
        HELPERS
        + """
def test_unmarked_is_isolated():
    assert own_namespace()

class TestAlso:
    def test_method(self):
        assert own_namespace()
"""
    )
    pytester.runpytest(*how).assert_outcomes(passed=2)
    pytester.runpytest().assert_outcomes(failed=2)


@pytest.mark.fork_only(reason="with the plugin disabled, --mountns-mode does not exist")
def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HELPERS
        + """
@pytest.mark.mountns
def test_marked():
    assert not own_namespace()
"""
    )
    result = pytester.runpytest("-p", "no:mountns", "-W", "ignore::pytest.PytestUnknownMarkWarning")
    result.assert_outcomes(passed=1)


@pytest.mark.fork_only(reason="the header names the mode; test_inprocess checks its own")
def test_markers_help_and_report_header(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    signature = (
        "@pytest.mark.mountns(*tmpfs_targets, tmpfs=None, bind=None, ro_bind=None, "
        "readonly=None, hide=None, overlay=None, propagation='private', timeout=None, "
        "fork=None, hermetic=None): *"
    )
    result.stdout.fnmatch_lines([signature])
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    findmnt = ["findmnt", "--noheadings", "--output", "PROPAGATION", "/"]
    propagation = subprocess.run(findmnt, capture_output=True, text=True, check=True).stdout
    result.stdout.fnmatch_lines(
        [f"mountns: isolation available (root: *); mode fork; / propagation: {propagation.strip()}"]
    )


def test_tmp_path_first_asked_for_under_a_tmpfs_over_its_root_stays_usable(
    pytester: pytest.Pytester,
) -> None:
    """pytest makes its basetemp at the first ``tmp_path`` and keeps the path for the session.

    Its root here is a directory the first test covers with a tmpfs, as it would
    cover /tmp; pytest's default basetemp (no ``--basetemp``) is made there.
    """
    root = pytester.mkdir("temproot")
    pytester.makepyfile(
        f"""
import pytest

@pytest.mark.mountns({str(root)!r})
def test_asks_late(request):
    (request.getfixturevalue("tmp_path") / "x").write_text("x")

def test_after(tmp_path):
    (tmp_path / "y").write_text("y")
    assert tmp_path.is_relative_to({str(root)!r})
"""
    )
    env = {**os.environ, "PYTEST_DEBUG_TEMPROOT": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert outcomes(done.stdout) == {"passed": 2}, done.stdout + done.stderr
