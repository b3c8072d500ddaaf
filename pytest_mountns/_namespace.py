"""Child side: enter a private mount namespace and apply a test's mounts.

Runs only in the forked child, after which the host never sees a mount.
Paths the kernel parses out of an option string (overlay's) are passed as
``/proc/self/fd/N`` so that no ``:`` or ``,`` in a real path can break them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from . import _linux
from ._linux import CloneFlag, MountFlag
from ._spec import Mount, MountPlan, TmpfsOptions, is_within

_LOCKED_ON_OUR_MOUNTS = MountFlag.NOSUID | MountFlag.NODEV


def enter_private_namespace(
    parent_namespace: int, user_namespace: bool, propagation: str = "private"
) -> None:
    """Unshare the mount namespace and cut every propagation link to the host.

    With ``user_namespace``, first enter a new user namespace that maps the
    caller's own uid and gid, which gives the right to mount without root.
    ``MS_REC`` matters: on a systemd host ``/`` and its submounts are shared,
    and a mount below any shared one would otherwise appear on the host.
    ``slave`` still lets the host's new mounts in; nothing goes out either way.
    """
    if user_namespace:
        uid, gid = os.getuid(), os.getgid()
        _linux.unshare(CloneFlag.NEWUSER)
        _linux.map_own_ids(uid, gid)
    _linux.unshare(CloneFlag.NEWNS)
    kind = MountFlag.SLAVE if propagation == "slave" else MountFlag.PRIVATE
    _linux.mount(None, "/", None, MountFlag.REC | kind)
    if _linux.mount_namespace_id() == parent_namespace:
        raise RuntimeError("unshare succeeded but the process is still in pytest's namespace")


def mount_tmpfs(target: str, options: TmpfsOptions) -> None:
    """Mount a writable tmpfs; ``apply`` makes it read-only once it is populated."""
    flags = _LOCKED_ON_OUR_MOUNTS
    if options.noexec:
        flags |= MountFlag.NOEXEC
    _linux.mount("tmpfs", target, "tmpfs", flags, options.mount_data())


def apply(plan: MountPlan, keep_visible: Sequence[str] = ()) -> None:
    """Mount the plan, parents first, then bind back the directories it must not hide.

    ``keep_visible`` holds pytest's basetemp: a tmpfs over ``/tmp`` would
    otherwise hide the directory ``tmp_path`` lives in. Read-only tmpfs are
    made so last, once everything below them exists.
    """
    cwd = os.getcwd()
    kept = [(path, _open_path(path)) for path in keep_visible if plan.covers(path)]
    fresh: list[str] = []
    for mount in plan.mounts:
        if any(is_within(mount.target, outer) for outer in fresh):
            _create_inside(mount)
        apply_one(mount)
        if mount.kind == "tmpfs":
            fresh.append(mount.target)
    for path, _ in kept:
        os.makedirs(path, exist_ok=True)  # while every tmpfs is still writable
    for mount in plan.mounts:
        if mount.kind == "tmpfs" and mount.options.ro:
            _linux.set_readonly(mount.target)
    for path, fd in kept:
        _linux.mount(f"/proc/self/fd/{fd}", path, None, MountFlag.BIND | MountFlag.REC)
        os.close(fd)
        _linux.set_readonly(path, False)  # writable even below a read-only mount
    if plan.covers(cwd):
        _reenter(cwd, plan)


def apply_one(mount: Mount) -> None:
    """Put one mount in place, now; a read-only tmpfs stays writable until ``apply`` ends."""
    target = mount.target
    if mount.kind == "tmpfs":
        mount_tmpfs(target, mount.options)
    elif mount.kind in ("bind", "ro_bind"):
        assert mount.source is not None
        _linux.mount(mount.source, target, None, MountFlag.BIND | MountFlag.REC)
    elif mount.kind == "readonly" and target != "/":
        # Its own mount, so that only this subtree turns read-only. (A bind on "/"
        # would never be seen: a process's root stays the mount it started on.)
        _linux.mount(target, target, None, MountFlag.BIND | MountFlag.REC)
    elif mount.kind == "hide" and os.path.isdir(target):
        mount_tmpfs(target, TmpfsOptions(size="4k", nr_inodes="16", mode=0o755))
    elif mount.kind == "hide":
        _hide_file(target)
    elif mount.kind == "overlay":
        _overlay(target)
    if mount.kind in ("ro_bind", "readonly", "hide"):
        _linux.set_readonly(target)


def _hide_file(target: str) -> None:
    """Bind an empty file over ``target``, staged on a tmpfs briefly over its directory."""
    directory = os.path.dirname(target)
    with _open_fd(target) as real_file, _staging_tmpfs(directory):
        empty = os.path.join(directory, "empty")
        with open(empty, "w"):
            pass
        _linux.mount(empty, f"/proc/self/fd/{real_file}", None, MountFlag.BIND)


def _overlay(target: str) -> None:
    """Copy-on-write: the real content below, the test's writes in a tmpfs above."""
    with _open_fd(target) as lower:
        mount_tmpfs(target, TmpfsOptions(mode=0o755))
        os.mkdir(os.path.join(target, "upper"), 0o755)
        os.mkdir(os.path.join(target, "work"), 0o755)
        with (
            _open_fd(os.path.join(target, "upper")) as upper,
            _open_fd(os.path.join(target, "work")) as work,
        ):
            fd = "/proc/self/fd/"
            data = f"lowerdir={fd}{lower},upperdir={fd}{upper},workdir={fd}{work}"
            _linux.mount("overlay", target, "overlay", MountFlag.NONE, data)


@contextlib.contextmanager
def _staging_tmpfs(directory: str) -> Iterator[None]:
    mount_tmpfs(directory, TmpfsOptions(size="4k", mode=0o755))
    try:
        yield
    finally:
        _linux.umount(directory, _linux.MNT_DETACH)


@contextlib.contextmanager
def _open_fd(path: str) -> Iterator[int]:
    fd = _open_path(path)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_path(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def _create_inside(mount: Mount) -> None:
    """Make a nested target inside our own fresh tmpfs: a file if a file is bound there."""
    if mount.source is not None and not os.path.isdir(mount.source):
        os.makedirs(os.path.dirname(mount.target), exist_ok=True)
        with open(mount.target, "a"):
            pass
    else:
        os.makedirs(mount.target, exist_ok=True)


def _reenter(cwd: str, plan: MountPlan) -> None:
    """Step into the new mount, so relative paths resolve inside it."""
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        covering = [m.target for m in plan.mounts if is_within(cwd, m.target)]
        os.chdir(covering[-1])
