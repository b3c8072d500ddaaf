"""Entering a private mount namespace and applying a test's mounts.

Runs in the forked child, or in pytest's own thread once it has entered the
test's namespace (in-process mode); the host never sees a mount.
Paths the kernel parses out of an option string (overlay's) are passed as
``/proc/self/fd/N`` so that no ``:`` or ``,`` in a real path can break them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from . import _hermetic, _layout, _linux
from ._linux import CloneFlag, MountFlag
from ._plan import MountPlan, is_within
from ._spec import Mount, TmpfsOptions

_LOCKED_ON_OUR_MOUNTS = MountFlag.NOSUID | MountFlag.NODEV
CAPABILITIES_IN_EFFECT = (_linux.CAP_SYS_ADMIN, _linux.CAP_SYS_CHROOT)
"""What isolation needs in a user namespace: mounts, and ``setns``/``chroot`` on the way back."""
CAPABILITIES_PERMITTED = (*CAPABILITIES_IN_EFFECT, _linux.CAP_DAC_OVERRIDE)
"""And for the moment an overlay is mounted: the kernel gives it its mounter's rights."""


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
        keep_only_needed_capabilities(for_programs=False)
    _linux.unshare(CloneFlag.NEWNS)
    kind = MountFlag.SLAVE if propagation == "slave" else MountFlag.PRIVATE
    _linux.mount(None, "/", None, MountFlag.REC | kind)
    if _linux.mount_namespace_id() == parent_namespace:
        raise RuntimeError("unshare succeeded but the process is still in pytest's namespace")


def keep_only_needed_capabilities(for_programs: bool) -> None:
    """In a user namespace the process holds every capability, and would be more than its
    user: it could write the user's own read-only files. Only what isolation needs stays in
    effect; ``for_programs``: the programs it executes keep it too (xdist's workers)."""
    _linux.keep_only_capabilities(CAPABILITIES_IN_EFFECT, CAPABILITIES_PERMITTED, for_programs)


def mount_tmpfs(target: str, options: TmpfsOptions) -> None:
    """Mount a writable tmpfs; ``apply`` makes it read-only once it is populated."""
    flags = _LOCKED_ON_OUR_MOUNTS
    if options.noexec:
        flags |= MountFlag.NOEXEC
    _linux.mount("tmpfs", target, "tmpfs", flags, options.mount_data())


def apply(
    plan: MountPlan, only_own_ids: bool = False, layout: _layout.Layout | None = None
) -> _hermetic.Cover | None:
    """Mount the plan, parents first, make what it needs, then bind back what it must not hide.

    Bind sources are opened before anything is mounted, so a mount cannot
    change what they mean. A missing target, or a directory of ``plan.make``,
    is created only on a mount made here (``_create``). What is read-only and
    made here (a ``ro`` tmpfs, a hidden directory) turns so last, once what
    lies inside exists; read-only binds turn so at once, as nothing is made below them.
    ``plan.keep`` holds pytest's basetemp: a tmpfs over ``/tmp`` would
    otherwise hide the directory ``tmp_path`` lives in (bound back only where a
    declared mount covers it; a hermetic cover has bound it through already). A hermetic plan covers
    the file systems first (``_hermetic``), and the declared mounts go on top;
    in a user namespace (``only_own_ids``) they turn read-only instead. ``layout``: the
    mounts as the cover needs them, if known before (``_layout.Watched``).
    """
    cwd = os.getcwd()
    cover = None
    owned: set[int] = set()
    if plan.hermetic:
        written_through = tuple(m.source for m in plan.mounts if m.kind == "bind" and m.source)
        through = (*plan.keep, *written_through)
        cover = _hermetic.cover(through, readonly_instead=only_own_ids, layout=layout)
        owned.update(os.stat(layer.mountpoint).st_dev for layer in cover.layers)
    sources = {m.target: _open_path(m.source) for m in plan.mounts if m.source is not None}
    kept = [(path, _open_path(path)) for path in plan.keep if plan.covers(path)]
    try:
        for mount in plan.mounts:
            if not os.path.lexists(mount.target):
                source = sources.get(mount.target)
                is_file = source is not None and not stat.S_ISDIR(os.fstat(source).st_mode)
                _create(mount.target, is_file, owned)
            apply_one(mount, sources.get(mount.target), deferred=True)
            if owns(mount):
                owned.add(os.stat(mount.target).st_dev)
        for path in (*plan.make, *(path for path, _ in kept)):
            if not os.path.lexists(path):
                _create(path, False, owned)
        for mount in plan.mounts:
            if readonly_later(mount):  # not below: deeper declared mounts stay writable
                _linux.set_readonly(mount.target, recursive=False)
        for path, fd in kept:
            _linux.mount(f"/proc/self/fd/{fd}", path, None, MountFlag.BIND | MountFlag.REC)
            _linux.set_readonly(path, False)  # writable even below a read-only mount
    finally:
        for fd in (*sources.values(), *(fd for _, fd in kept)):
            os.close(fd)
    if plan.covers(cwd) or cover is not None:
        _reenter(cwd, plan)
    return cover


def apply_one(mount: Mount, source: int | None = None, deferred: bool = False) -> None:
    """Put one mount in place, now. ``deferred``: a ``ro`` tmpfs or a hidden directory
    stays writable, for ``apply`` to make read-only once what lies inside exists."""
    target = mount.target
    if mount.kind == "tmpfs":
        mount_tmpfs(target, mount.options)
    elif mount.kind in ("bind", "ro_bind"):
        assert mount.source is not None
        with contextlib.ExitStack() as stack:
            if source is None:
                source = stack.enter_context(_open_fd(mount.source))
            _linux.mount(f"/proc/self/fd/{source}", target, None, MountFlag.BIND | MountFlag.REC)
    elif mount.kind == "readonly" and target != "/":
        # Its own mount, so that only this subtree turns read-only. (A bind on "/"
        # would never be seen: a process's root stays the mount it started on.)
        _linux.mount(target, target, None, MountFlag.BIND | MountFlag.REC)
    elif mount.kind == "hide" and os.path.isdir(target):
        mount_tmpfs(target, TmpfsOptions(size="64k", nr_inodes="1k", mode=0o755))
    elif mount.kind == "hide":
        _hide_file(target)
    elif mount.kind == "overlay":
        _overlay(target)
    readonly_now = mount.kind in ("ro_bind", "readonly") or (
        mount.kind == "hide" and not owns(mount)
    )
    if readonly_now or (not deferred and readonly_later(mount)):
        _linux.set_readonly(target)


def owns(mount: Mount) -> bool:
    """Whether what is made below the mount, once in place, lands in memory of its own."""
    return mount.kind in ("tmpfs", "overlay") or (
        mount.kind == "hide" and os.path.isdir(mount.target)
    )


def readonly_later(mount: Mount) -> bool:
    """A read-only mount of its own memory: writable until what lies inside is made."""
    return (mount.kind == "tmpfs" and mount.options.ro) or (mount.kind == "hide" and owns(mount))


def _hide_file(target: str) -> None:
    """Bind an empty file over ``target``, made on a staging tmpfs over its directory.

    A process's root never shows a mount stacked on it, so for a file directly
    under ``/`` the staging tmpfs is reached as ``/..``, which the kernel
    resolves to the topmost mount there; and it is checked to be the tmpfs,
    so that the empty file can never land on the host.
    """
    directory = os.path.dirname(target)
    with _open_fd(target) as real_file, _staging_tmpfs(directory) as staging:
        empty = os.open("empty", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                        dir_fd=staging)  # fmt: skip
        os.close(empty)
        source = f"/proc/self/fd/{staging}/empty"
        _linux.mount(source, f"/proc/self/fd/{real_file}", None, MountFlag.BIND)


@contextlib.contextmanager
def _staging_tmpfs(directory: str) -> Iterator[int]:
    """A small tmpfs over ``directory`` for a moment; yields a descriptor of its root.

    Where that root cannot be reached, it raises, and the unreachable tmpfs
    stays, unseen, until the namespace ends.
    """
    before = os.stat(directory)
    mount_tmpfs(directory, TmpfsOptions(size="4k", nr_inodes="16", mode=0o755))
    reach = "/.." if directory == "/" else directory
    fd = os.open(reach, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if os.path.samestat(os.fstat(fd), before):
            raise OSError(errno.EXDEV, "the staging tmpfs cannot be reached", directory)
        try:
            yield fd
        finally:
            _linux.umount(f"/proc/self/fd/{fd}", _linux.MNT_DETACH)
    finally:
        os.close(fd)


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
            _linux.mount_overlay(target, f"{fd}{lower}", f"{fd}{upper}", f"{fd}{work}")


@contextlib.contextmanager
def _open_fd(path: str) -> Iterator[int]:
    fd = _open_path(path)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_path(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def _create(path: str, is_file: bool, owned: set[int]) -> None:
    """Make ``path`` (a file if a file is bound there), but only on a mount made here.

    The plan was checked for this before the fork; checked again here, on the
    device of the nearest existing ancestor, so that no mistake can write to the host.
    """
    ancestor = path
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if os.stat(ancestor).st_dev not in owned:
        raise OSError(
            errno.EPERM,
            f"refusing to create it: {ancestor} is not on a mount this test owns, "
            "so it would be created on the host",
            path,
        )
    if is_file:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "x"):
            pass
    else:
        os.makedirs(path)


def _reenter(cwd: str, plan: MountPlan) -> None:
    """Step into the new mount, so relative paths resolve inside it."""
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        covering = [m.target for m in plan.mounts if is_within(cwd, m.target)]
        os.chdir(covering[-1])
