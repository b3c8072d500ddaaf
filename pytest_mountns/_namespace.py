"""Child side: enter a private mount namespace and apply a test's mounts.

Runs only in the forked child, after which the host never sees a mount.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from . import _linux
from ._linux import CloneFlag, MountFlag
from ._spec import MountPlan, TmpfsOptions


def enter_private_namespace(parent_namespace: int, user_namespace: bool) -> None:
    """Unshare the mount namespace and cut every propagation link to the host.

    With ``user_namespace``, first enter a new user namespace that maps the
    caller's own uid and gid, which gives the right to mount without root.
    ``MS_REC`` matters: on a systemd host ``/`` and its submounts are shared,
    and a mount below any shared one would otherwise appear on the host.
    """
    if user_namespace:
        uid, gid = os.getuid(), os.getgid()
        _linux.unshare(CloneFlag.NEWUSER)
        _linux.map_own_ids(uid, gid)
    _linux.unshare(CloneFlag.NEWNS)
    _linux.mount(None, "/", None, MountFlag.REC | MountFlag.PRIVATE)
    if _linux.mount_namespace_id() == parent_namespace:
        raise RuntimeError("unshare succeeded but the process is still in pytest's namespace")


def mount_tmpfs(target: str, options: TmpfsOptions) -> None:
    """Mount a writable tmpfs; ``apply`` makes it read-only once it is populated."""
    flags = MountFlag.NOSUID | MountFlag.NODEV
    if options.noexec:
        flags |= MountFlag.NOEXEC
    _linux.mount("tmpfs", target, "tmpfs", flags, options.mount_data())


def apply(plan: MountPlan, keep_visible: Sequence[str] = ()) -> None:
    """Mount the plan, parents first, then bind back the directories it must not hide.

    ``keep_visible`` holds pytest's basetemp: a tmpfs over ``/tmp`` would
    otherwise hide the directory ``tmp_path`` lives in.
    """
    cwd = os.getcwd()
    kept = [
        (path, os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        for path in keep_visible
        if plan.covers(path)
    ]
    mounted: list[str] = []
    for mount in plan.tmpfs:
        if any(_is_below(mount.target, outer) for outer in mounted):
            os.makedirs(mount.target, exist_ok=True)  # inside our own fresh tmpfs
        mount_tmpfs(mount.target, mount.options)
        mounted.append(mount.target)
    for path, fd in kept:
        os.makedirs(path, exist_ok=True)
        _linux.mount(f"/proc/self/fd/{fd}", path, None, MountFlag.BIND | MountFlag.REC)
        os.close(fd)
    for mount in plan.tmpfs:
        if mount.options.ro:
            flags = MountFlag.REMOUNT | MountFlag.RDONLY | MountFlag.NOSUID | MountFlag.NODEV
            if mount.options.noexec:
                flags |= MountFlag.NOEXEC
            _linux.mount(None, mount.target, None, flags)
    if plan.covers(cwd):
        _reenter(cwd, plan)


def _reenter(cwd: str, plan: MountPlan) -> None:
    """Step into the new mount, so relative paths resolve inside it."""
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        covering = [m.target for m in plan.tmpfs if cwd == m.target or _is_below(cwd, m.target)]
        os.chdir(covering[-1])


def _is_below(path: str, ancestor: str) -> bool:
    return path.startswith(ancestor.rstrip("/") + "/")
