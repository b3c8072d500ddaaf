"""Nothing on the host changes that a test did not declare: checked file by file.

Every run here happens in a throwaway root (``tests/_throwaway_root.py``): a
tmpfs made ``/`` of a fresh mount namespace, with the system and Python bound
in read-only. A snapshot of that root before and after the inner pytest shows
every file it created, changed or removed, ``/`` itself included; a plugin
that wrote to the host would write there, never to this machine's ``/``.
Each runs in both runners, as root and as a real unprivileged user (uid 65534,
no capabilities: isolation through a user namespace).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests._throwaway_root import NOBODY, Run, run_pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a throwaway root needs root to build")

MODES = ["fork", "inprocess"]
USERS = [pytest.param(0, id="root"), pytest.param(NOBODY, id="nobody")]
BASETEMP = "/tmp/basetemp"

# What the inner projects find: files at the top of the root, owned by root,
# and in /project, owned by the user running the inner pytest.
LAYOUT = """
printf top > /topfile && chmod 666 /topfile
mkdir -m 1777 /topdir && printf x > /topdir/x
mkdir -p data/sub src/dir && printf a > data/a.txt && printf b > data/sub/b.txt
printf s > src/s.txt && printf f > srcfile && ln -s data link
chown -R "$(stat -c %u /project):$(stat -c %g /project)" /project
"""

HELPERS = """
import errno, os, pytest

def write(path, text="written"):
    with open(path, "w") as f:
        f.write(text)

def refused(path):
    try:
        write(path)
    except OSError as error:
        return error.errno
    return None

def read(path):
    with open(path) as f:
        return f.read()
"""


def project(tmp_path: Path, body: str) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "test_host.py").write_text(HELPERS + textwrap.dedent(body))
    return directory


def run(tmp_path: Path, body: str, mode: str, uid: int, *args: str) -> Run:
    """In-process mode really runs in-process, as a normal user too: in the session's
    user namespace, which ``auto`` enters for it."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = run_pytest(
        project(tmp_path, body),
        f"--mountns-mode={mode}",
        *args,
        workdir=workdir,
        uid=uid,
        setup_as_root=LAYOUT,
    )
    assert f"; mode {mode}" in result.stdout, result.stdout
    return result


def assert_only_passes(result: Run, count: int) -> None:
    failures = {name: r for name, r in result.results.items() if r[0] != "passed"}
    assert not failures, f"{failures}\n{result.stdout}\n{result.stderr}"
    assert len(result.results) == count, result.stdout


EVERY_KEYWORD = """
@pytest.mark.mountns("/topdir")
def test_tmpfs_directly_under_the_root():
    assert os.listdir("/topdir") == []
    write("/topdir/new")

@pytest.mark.mountns(tmpfs={"/project/link": "size=1m"})
def test_tmpfs_through_a_symlink():
    assert os.listdir("/project/data") == []
    write("/project/link/new")

@pytest.mark.mountns(tmpfs=["/project/data", "/project/data/not/yet/there"])
def test_a_target_below_a_tmpfs_is_made_inside_it():
    write("/project/data/not/yet/there/new")

@pytest.mark.mountns(tmpfs=["/project/data"], bind={"/project/data/made/src": "src"})
def test_a_bind_below_a_tmpfs_writes_through():
    assert read("/project/data/made/src/s.txt") == "s"
    write("/project/data/made/src/through.txt")

@pytest.mark.mountns(ro_bind={"/project/data/a.txt": "srcfile", "/project/data/sub": "src"})
def test_ro_binds_refuse_writes():
    assert read("/project/data/a.txt") == "f"
    assert refused("/project/data/a.txt") == errno.EROFS
    assert refused("/project/data/sub/new") == errno.EROFS

@pytest.mark.mountns(readonly=["/"], tmpfs=["/project/data"])
def test_readonly_root_with_a_hole():
    assert refused("/topfile") == errno.EROFS
    assert refused("/project/new") == errno.EROFS
    write("/project/data/new")

@pytest.mark.mountns(hide=["/topfile", "/topdir", "/project/data/a.txt"])
def test_hide_a_file_under_the_root_a_directory_and_a_deep_file():
    assert read("/topfile") == "" and os.listdir("/topdir") == []
    assert read("/project/data/a.txt") == ""
    assert refused("/topfile") == errno.EROFS
    assert refused("/project/data/a.txt") == errno.EROFS

@pytest.mark.mountns(hide=["/project/data"], tmpfs=["/project/data/inner"])
def test_a_tmpfs_inside_a_hidden_directory():
    assert os.listdir("/project/data") == ["inner"]
    write("/project/data/inner/new")
    assert refused("/project/data/new") == errno.EROFS

@pytest.mark.mountns(overlay=["/project/data", "/topdir"])
def test_overlay_takes_writes_deletes_and_renames():
    write("/project/data/a.txt", "changed")
    os.remove("/project/data/sub/b.txt")
    os.rename("/project/data/a.txt", "/project/data/moved.txt")
    write("/project/data/new")
    write("/topdir/new")
    assert sorted(os.listdir("/project/data")) == ["moved.txt", "new", "sub"]

@pytest.mark.mountns(tmpfs={"/tmp": "size=1m"})
def test_tmp_path_under_a_tmpfs_over_tmp(tmp_path):
    write(tmp_path / "kept")

@pytest.mark.mountns(hide=["/tmp"])
def test_tmp_path_and_isolated_tmpfs_under_a_hidden_tmp(tmp_path, isolated_tmpfs):
    write(tmp_path / "kept")
    write(isolated_tmpfs / "gone")

@pytest.mark.mountns(readonly=["/tmp"])
def test_tmp_path_and_isolated_tmpfs_under_a_readonly_tmp(tmp_path, isolated_tmpfs):
    write(tmp_path / "kept")
    write(isolated_tmpfs / "gone")

@pytest.mark.mountns(overlay=["/tmp"])
def test_tmp_path_under_an_overlay(tmp_path, isolated_tmpfs):
    write(tmp_path / "kept")
    write(isolated_tmpfs / "gone")

def test_the_fixture_at_every_depth(mountns):
    mountns.hide("/topfile")
    mountns.tmpfs("/topdir")
    mountns.overlay("/project/data")
    mountns.bind("srcfile", "/project/data/a.txt", readonly=True)
    mountns.readonly("/project/src")
    assert read("/topfile") == "" and os.listdir("/topdir") == []
    write("/project/data/new")
    assert refused("/project/src/new") == errno.EROFS
"""


@pytest.mark.parametrize("uid", USERS)
@pytest.mark.parametrize("mode", MODES)
def test_every_keyword_leaves_the_host_byte_identical(tmp_path: Path, mode: str, uid: int) -> None:
    result = run(tmp_path, EVERY_KEYWORD, mode, uid)
    assert_only_passes(result, EVERY_KEYWORD.count("\ndef test_"))
    changes = result.changes(BASETEMP)
    # The one write a test declared to reach the host: through a writable bind.
    assert list(changes) == ["/project/src/through.txt"], changes
    kept = [path for path in result.after if path.endswith("/kept")]
    assert len(kept) == 4 and all(path.startswith(BASETEMP) for path in kept)


HIDE_FILES_UNDER_THE_ROOT = """
@pytest.mark.mountns(hide=["/topfile"])
def test_hide_an_existing_file():
    assert read("/topfile") == ""

@pytest.mark.mountns(hide=["/nothing-here"])
def test_hide_a_missing_file():
    pass
"""


@pytest.mark.parametrize("uid", USERS)
@pytest.mark.parametrize("mode", MODES)
def test_hiding_a_file_under_the_root_neither_truncates_nor_creates_it(
    tmp_path: Path, mode: str, uid: int
) -> None:
    result = run(tmp_path, HIDE_FILES_UNDER_THE_ROOT, mode, uid)
    assert result.outcomes() == {"test_hide_an_existing_file": "passed",
                                 "test_hide_a_missing_file": "error"}  # fmt: skip
    assert (
        "hide target '/nothing-here': does not exist"
        in result.results["test_hide_a_missing_file"][1]
    )
    assert result.changes(BASETEMP) == {}


SPARE_SEES_WHAT_THE_TEST_BEFORE_CHANGED = """
import time

def wait_for_the_next_child():
    '''The next test's child, forked ahead while this one runs: a sibling of this process.'''
    parent = os.getppid()
    for _ in range(500):
        siblings = set()
        for task in os.listdir(f"/proc/{parent}/task"):
            siblings.update(read(f"/proc/{parent}/task/{task}/children").split())
        if siblings - {str(os.getpid())}:
            return
        time.sleep(0.01)
    raise AssertionError("no child was forked ahead for the next test")

os.makedirs("/project/app/v1/cache", exist_ok=True)
os.makedirs("/project/app/v2/cache", exist_ok=True)
if not os.path.lexists("/project/app/current"):
    os.symlink("v1", "/project/app/current")

@pytest.mark.mountns
def test_switches_the_symlink():
    wait_for_the_next_child()
    os.remove("/project/app/current")
    os.symlink("v2", "/project/app/current")

@pytest.mark.mountns("/project/app/current/cache")
def test_cache_follows_the_new_link():
    assert os.listdir("/project/app/current/cache") == []
    write("/project/app/current/cache/x")

@pytest.mark.mountns
def test_removes_the_next_target():
    wait_for_the_next_child()
    os.rmdir("/project/app/v1/cache")

@pytest.mark.mountns("/project/app/v1/cache")
def test_target_gone():
    pass

os.makedirs("/project/app/data", exist_ok=True)
write("/project/app/secret", "old")

@pytest.mark.mountns
def test_replaces_the_next_target():
    wait_for_the_next_child()
    os.rmdir("/project/app/data")
    os.mkdir("/project/app/data")

@pytest.mark.mountns("/project/app/data")
def test_writes_in_the_replaced_target():
    write("/project/app/data/x")

@pytest.mark.mountns
def test_replaces_a_hidden_file():
    wait_for_the_next_child()
    write("/project/app/secret.new", "new")
    os.replace("/project/app/secret.new", "/project/app/secret")

@pytest.mark.mountns(hide=["/project/app/secret"])
def test_the_replaced_file_is_hidden():
    assert read("/project/app/secret") == ""
"""


@pytest.mark.parametrize("uid", USERS)
def test_a_child_forked_ahead_resolves_targets_after_the_test_before_ended(
    tmp_path: Path, uid: int
) -> None:
    result = run(tmp_path, SPARE_SEES_WHAT_THE_TEST_BEFORE_CHANGED, "fork", uid)
    outcomes = result.outcomes()
    assert outcomes.pop("test_target_gone") == "error", result.stdout
    assert set(outcomes.values()) == {"passed"}, result.stdout
    assert "'/project/app/v1/cache': does not exist" in result.results["test_target_gone"][1]
    # What the module and the tests did to the host themselves, and not a cache file in v2.
    assert list(result.changes(BASETEMP)) == [
        "/project/app",
        "/project/app/current",
        "/project/app/data",
        "/project/app/secret",
        "/project/app/v1",
        "/project/app/v2",
        "/project/app/v2/cache",
    ]


NOTHING_CREATED_IN_A_BIND_SOURCE = """
@pytest.mark.mountns(tmpfs=["/project/data"], bind={"/project/data/b": "src"})
@pytest.mark.mountns(tmpfs=["/project/data/b/nested"])
def test_target_below_a_bind_inside_a_tmpfs():
    pass

@pytest.mark.mountns(bind={"/tmp": "src"})
def test_bind_over_the_basetemp(tmp_path):
    pass

@pytest.mark.mountns(bind={"/tmp": "src"})
def test_bind_over_the_isolated_tmpfs_mount_point(isolated_tmpfs):
    pass

@pytest.mark.mountns(readonly=["/project"], tmpfs=["/project/data/sub/missing"])
def test_target_below_a_readonly_mount():
    pass
"""


@pytest.mark.parametrize("uid", USERS)
@pytest.mark.parametrize("mode", MODES)
def test_what_could_only_be_created_in_a_bind_source_is_a_declaration_error(
    tmp_path: Path, mode: str, uid: int
) -> None:
    result = run(tmp_path, NOTHING_CREATED_IN_A_BIND_SOURCE, mode, uid)
    assert set(result.outcomes().values()) == {"error"}, result.stdout
    messages = {name: message for name, (_, message) in result.results.items()}
    source = "would have to be created on the host, in '/project/src', the source of bind target"
    assert (
        "tmpfs target '/project/data/b/nested': does not exist (it " + source
        in messages["test_target_below_a_bind_inside_a_tmpfs"]
    )
    assert (
        f"pytest's basetemp '{BASETEMP}': is not reachable"
        in messages["test_bind_over_the_basetemp"]
    )
    assert (
        "isolated_tmpfs's mount point '/tmp/pytest-mountns-"
        in messages["test_bind_over_the_isolated_tmpfs_mount_point"]
    )
    assert (
        "below readonly target '/project', on the host"
        in messages["test_target_below_a_readonly_mount"]
    )
    assert result.changes(BASETEMP) == {}


OVERLAY_OWNERS = """
@pytest.mark.mountns(overlay=["/project/data"])
def test_over_a_tree_of_ones_own():
    write("/project/data/sub/new")

@pytest.mark.mountns(overlay=["/project/tree"])
def test_over_a_tree_with_a_writable_directory_of_roots():
    pass

@pytest.mark.mountns(overlay=["/topdir"])
def test_over_a_directory_of_roots_that_needs_no_copy():
    write("/topdir/new")

@pytest.mark.mountns(overlay=["/project/mounted"])
def test_over_a_directory_with_a_mount_below():
    pass
"""


def test_overlay_in_a_user_namespace_refuses_what_it_could_not_copy_up(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = run_pytest(
        project(tmp_path, OVERLAY_OWNERS),
        workdir=workdir,
        uid=NOBODY,
        setup_as_root=LAYOUT
        + "mkdir -p /project/tree/shared && chmod 1777 /project/tree/shared\n"
        + "mkdir -p /project/mounted/sub && mount -t tmpfs sub /project/mounted/sub\n"
        + "chown -R 65534:65534 /project/mounted\n",
    )
    assert result.outcomes() == {
        "test_over_a_tree_of_ones_own": "passed",
        "test_over_a_tree_with_a_writable_directory_of_roots": "error",
        "test_over_a_directory_of_roots_that_needs_no_copy": "passed",
        "test_over_a_directory_with_a_mount_below": "error",
    }, result.stdout
    assert (
        "overlay target '/project/tree': in a user namespace only your own uid (65534) and gid "
        "(65534) are mapped; '/project/tree/shared' belongs to uid 0, gid 0: changing it, as you "
        "may, would fail (EOVERFLOW); use a tmpfs or a bind instead"
    ) in result.results["test_over_a_tree_with_a_writable_directory_of_roots"][1]
    assert (
        "overlay target '/project/mounted': in a user namespace the mounts below it are locked "
        "('/project/mounted/sub' is one), and the kernel will not overlay them (EINVAL)"
    ) in result.results["test_over_a_directory_with_a_mount_below"][1]
    assert result.changes(BASETEMP) == {}
