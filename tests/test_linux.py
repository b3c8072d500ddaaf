"""The syscall choke point and the child's namespace entry, each run in a forked helper.

The suite itself never unshares: every call here happens in a throwaway child.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_mountns import _linux, _namespace, _processes
from pytest_mountns._spec import TmpfsOptions


def in_child(function: Callable[[], object]) -> object:
    """Run ``function`` in a forked child and return its result, or raise what it raised."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            outcome: tuple[bool, object] = (True, function())
        except BaseException as error:
            outcome = (False, error)
        os.write(write_fd, pickle.dumps(outcome))
        os._exit(0)
    os.close(write_fd)
    with open(read_fd, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    ok, value = pickle.loads(data)
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value


def enter_and(then: Callable[[], object]) -> Callable[[], object]:
    namespace = _linux.mount_namespace_id()

    def run() -> object:
        _namespace.enter_private_namespace(namespace, user_namespace=False)
        return then()

    return run


def test_entering_gives_a_new_namespace() -> None:
    assert in_child(enter_and(_linux.mount_namespace_id)) != _linux.mount_namespace_id()


def test_failed_mount_raises_oserror_naming_call_and_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as excinfo:
        in_child(enter_and(lambda: _namespace.mount_tmpfs(missing, TmpfsOptions())))
    assert excinfo.value.filename == missing
    assert excinfo.value.strerror == "mount(tmpfs, NOSUID|NODEV): No such file or directory"


def test_the_kernel_says_only_einval_for_a_bad_size(tmp_path: Path) -> None:
    """Why sizes are validated in Python: the kernel gives no reason."""
    with pytest.raises(OSError) as excinfo:
        in_child(
            enter_and(lambda: _linux.mount("tmpfs", str(tmp_path), "tmpfs", data="size=banana"))
        )
    assert excinfo.value.errno == errno.EINVAL


def test_a_namespace_that_did_not_change_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_linux, "_unshare", lambda flags: 0)  # an unshare that lies
    monkeypatch.setattr(_linux, "_mount", lambda *args: 0)
    with pytest.raises(RuntimeError, match="still in pytest's namespace"):
        in_child(enter_and(lambda: None))


REFUSE_MOUNTS_ON = """
import ctypes, errno, os
from pytest_mountns import _linux

def pytest_configure():
    original = _linux._mount
    def refuse(source, target, *rest):
        if target == os.fsencode({target!r}):
            ctypes.set_errno(errno.EACCES)
            return -1
        return original(source, target, *rest)
    _linux._mount = refuse
"""


@pytest.fixture
def restore_mount() -> object:
    original = _linux._mount
    yield
    _linux._mount = original


@pytest.mark.usefixtures("restore_mount")
def test_a_failing_mount_in_the_child_errors_the_setup(pytester: pytest.Pytester) -> None:
    """An errno injected at the choke point reaches the report, with the call and path."""
    target = pytester.mkdir("target")
    pytester.makeconftest(REFUSE_MOUNTS_ON.format(target=str(target)))
    pytester.makepyfile(
        f"""
import pytest

@pytest.mark.mountns({str(target)!r})
def test_isolated(): pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*mountns: could not set up the isolated namespace: *Permission denied*target*"]
    )


@pytest.mark.usefixtures("restore_mount")
def test_a_probe_refused_by_policy_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    """Docker's default AppArmor profile answers mount with EACCES; it can't be made here."""
    pytester.makeconftest(REFUSE_MOUNTS_ON.format(target="/"))
    pytester.makepyfile("import pytest\n@pytest.mark.mountns\ndef test_isolated(): pass")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*: mount(None, REC|PRIVATE): Permission denied on / (EACCES); an AppArmor*"]
    )


def test_read_only_falls_back_to_remounts_before_linux_5_12(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without mount_setattr (ENOSYS, injected), each mount is remounted keeping its flags."""
    (tmp_path / "sub").mkdir()

    def no_mount_setattr(*args: object) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(_linux, "_syscall", no_mount_setattr)

    def make_read_only_and_probe() -> tuple[int, list[str]]:
        _linux.mount(str(tmp_path), str(tmp_path), None, _linux.MountFlag.BIND)
        _namespace.mount_tmpfs(str(tmp_path / "sub"), TmpfsOptions(size="1m"))
        _linux.set_readonly(str(tmp_path))
        try:
            open(tmp_path / "sub" / "x", "w").close()
        except OSError as error:
            refused = error.errno
        with open("/proc/self/mountinfo") as table:
            lines = [line for line in table if f" {tmp_path}/sub " in line]
        return refused, lines[-1].split()[5].split(",")

    refused, flags = in_child(enter_and(make_read_only_and_probe))  # type: ignore[misc]
    assert refused == errno.EROFS
    assert {"ro", "nosuid", "nodev"} <= set(flags)


def test_the_mount_table_watch_sees_mounts_of_its_namespace_only(tmp_path: Path) -> None:
    from pytest_mountns._mountinfo import Watch

    def watch_a_mount() -> list[str | None]:
        watch = Watch()
        watch.start()
        seen = [watch.changes()]  # nothing yet
        child = os.fork()
        if child == 0:  # a namespace of its own: its mounts are not ours
            _linux.unshare(_linux.CloneFlag.NEWNS)
            _namespace.mount_tmpfs(str(tmp_path), TmpfsOptions(size="1m"))
            os._exit(0)
        os.waitpid(child, 0)
        seen.append(watch.changes())
        _namespace.mount_tmpfs(str(tmp_path), TmpfsOptions(size="1m"))
        seen.append(watch.changes())
        seen.append(watch.changes())  # reported once
        return seen

    seen = in_child(enter_and(watch_a_mount))
    assert seen == [None, None, f"  + {tmp_path} (tmpfs from tmpfs, private)", None]


def test_staging_never_writes_where_the_tmpfs_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the staging tmpfs not where the empty file is made, nothing is made at all."""
    target = tmp_path / "secret"
    target.write_text("precious")
    monkeypatch.setattr(_namespace, "mount_tmpfs", lambda target, options: None)  # a mount lost
    with pytest.raises(OSError) as excinfo:
        in_child(enter_and(lambda: _namespace._hide_file(str(target))))
    assert excinfo.value.errno == errno.EXDEV
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_nothing_is_created_off_the_mounts_a_test_owns(tmp_path: Path) -> None:
    missing = tmp_path / "a" / "b"
    with pytest.raises(PermissionError, match="is not on a mount this test owns"):
        _namespace._create(str(missing), is_file=False, owned={os.stat("/proc").st_dev})
    assert not (tmp_path / "a").exists()


def test_ending_goes_on_when_what_a_walk_found_died_before_it_was_frozen() -> None:
    """A process that forks itself and exits, over and over, is found dead by one walk and
    as its fork by the next: a first walk that froze nothing must not end the search."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    walks = iter([[dead.pid], [live.pid]])
    try:
        ended = _processes.view().end(lambda: next(walks, []), lambda: 0)
        assert list(ended) == [live.pid]
        with pytest.raises(ProcessLookupError):  # killed, and reaped by the end itself
            os.kill(live.pid, 0)
    finally:
        live.kill()
        live.wait()
