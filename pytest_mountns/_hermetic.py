"""Hermetic tests: every writable file system the test sees, behind a copy-on-write overlay.

In the test's namespace, already cut off from the host, a new root is
assembled on a staging tmpfs: an overlay of the real root (the real one below,
a directory of the staging tmpfs above), and onto it the mounts of the old one,
moved, each with what is mounted on it; a writable real file system among them
gets an overlay of its own in its place, and a writable file mounted on its
own (Docker's ``/etc/hosts``) a copy. Proc, sysfs, devtmpfs, cgroup and
read-only mounts stay as they are. The new root is moved over ``/``, and the
thread's root set to it. The test reads the real files; what it writes,
creates, renames or deletes lands in the upper layers, which vanish with the
namespace and which ``Cover.writes`` walks to say what the test tried to write.

Runs where the namespace's mounts are applied (the forked child, or pytest's
thread in its test's namespace). Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

from . import _layout, _linux, _mountinfo
from ._linux import MountFlag
from ._plan import is_within


@dataclass(frozen=True)
class Layer:
    """One overlay (or a file's copy): where it is, its upper layer, and the real one below."""

    mountpoint: str
    staging: int
    """A descriptor of the tmpfs that holds the upper layer."""
    upper: str
    """The upper layer's name in that tmpfs: a directory, or a file's copy."""
    lower: int
    """A descriptor of the real directory (a file system's root, as root) or file, for the
    audit."""


@dataclass(frozen=True)
class Write:
    path: str
    change: str
    """``created``, ``modified`` or ``deleted``."""


class Cover:
    """The overlays of one test, and what it wrote through them."""

    def __init__(self, layers: tuple[Layer, ...], readonly: tuple[str, ...] = ()) -> None:
        self.layers = layers
        self.readonly = readonly
        """The file systems made read-only instead of overlaid (in a user namespace)."""

    def writes(self) -> list[Write]:
        """Every path the test created, modified or deleted under an overlay, in order.

        A rename shows as the old path deleted and the new one created; a
        directory shows only where it is new (its parents are copied up as
        a matter of course); a file copied up for a change of its metadata
        only counts as modified.
        """
        found: list[Write] = []
        for layer in self.layers:
            top = f"/proc/self/fd/{layer.staging}/{layer.upper}"
            if not stat.S_ISDIR(os.stat(top).st_mode):  # a file's copy (``_copy_file``)
                if _differs(top, f"/proc/self/fd/{layer.lower}"):
                    found.append(Write(layer.mountpoint, "modified"))
                continue
            below = -1  # the real tree as the overlay sees it: the staging tmpfs may be on it
            try:
                for directory, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
                    relative = os.path.relpath(directory, top)
                    for name in sorted(dirs + files):
                        if below < 0:
                            below = _linux.clone_mount(layer.lower)
                        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        path = os.path.normpath(os.path.join(relative, name))
                        change = _change(info, _exists_below(below, path))
                        if change is not None:
                            found.append(Write(_join(layer.mountpoint, path), change))
                    dirs.sort()
            finally:
                if below >= 0:
                    os.close(below)
        return found

    def close(self) -> None:
        for fd in {fd for layer in self.layers for fd in (layer.lower, layer.staging)}:
            os.close(fd)


def cover(
    through: tuple[str, ...] = (),
    readonly_instead: bool = False,
    layout: _layout.Layout | None = None,
) -> Cover:
    """Put every writable real file system behind an overlay, in this mount namespace.

    ``through`` are paths that stay the real ones, writable: pytest's basetemp,
    and the sources of the test's writable binds, which write through by design.
    ``readonly_instead``: in a user namespace, where an overlay cannot copy up
    what belongs to ids it does not map (root's directories, EOVERFLOW at the
    first write), each is made read-only where it is instead, never left
    writable, and only the places a user writes to (``user_places``) get an
    overlay of their own. ``layout``: this namespace's, if known (``_layout.Watched``).
    """
    layout = layout or _layout.work_out(_mountinfo.read())
    if readonly_instead:
        return _in_place(layout, through)
    return _new_root(layout, through)


def user_places() -> list[str]:
    """Where a user's tests write: home, the temporary directories, the working directory."""
    places = [os.path.expanduser("~"), tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]
    return [*places, os.getcwd()]


def _in_place(layout: _layout.Layout, through: tuple[str, ...]) -> Cover:
    """In a user namespace: the file systems read-only where they are, an overlay on each
    place the user may write to, where it has no mount below; ``through`` bound back.

    An overlay's own top needs no copy-up, and below it the user's entries copy up
    as they are: so a place of the user's own, or a sticky one like ``/tmp``, works.
    It takes the mode of the directory it covers; its owner shows as the user.
    """
    readonly = [mount.path for mount in layout.root.walk() if mount.overlaid]
    places: list[str] = []
    for place in dict.fromkeys(os.path.realpath(p) for p in user_places()):
        inside = [path for path in readonly if is_within(place, path)]
        below = [point for point in layout.points if point != place and is_within(point, place)]
        if (
            inside
            and not below
            and place != "/"
            and os.path.isdir(place)
            and os.access(place, os.W_OK)
            and not any(is_within(place, other) or is_within(other, place) for other in places)
        ):
            places.append(place)
    lowers = [(place, _open(place)) for place in places]
    kept = _hold(through)
    layers: list[Layer] = []
    try:
        for path in readonly:
            _linux.set_readonly(path, recursive=False)
        for place, lower in lowers:
            layers.append(_overlay_here(place, lower))
        for path, fd in kept.items():
            _linux.mount(f"/proc/self/fd/{fd}", path, None, MountFlag.BIND | MountFlag.REC)
            _linux.set_readonly(path, False)
    except BaseException:
        for _, lower in lowers[len(layers) :]:
            os.close(lower)
        Cover(tuple(layers)).close()
        raise
    finally:
        for fd in kept.values():
            os.close(fd)
    return Cover(tuple(layers), tuple(path for path in readonly if path not in places))


def _overlay_here(place: str, lower: int) -> Layer:
    """A tmpfs over ``place`` for the upper layer, then the overlay over both."""
    _linux.mount("tmpfs", place, "tmpfs", MountFlag.NOSUID | MountFlag.NODEV, "mode=0700")
    staging = _open(place)
    try:
        _overlay(place, lower, staging, "upper", "work")
    except BaseException:
        os.close(staging)
        raise
    return Layer(place, staging, "upper", lower)


def _overlay(target: str, lower: int, staging: int, upper: str, work: str) -> None:
    """An overlay on ``target``: the real directory ``lower`` holds below, ``upper`` (a new
    directory of the staging tmpfs) above. The overlay's top is ``upper``'s own: it takes
    the real one's mode, past the umask (the sticky bit of ``/tmp``, ``/dev/shm``), and its
    owner where that is mapped (in a user namespace, the user's places show as the user's)."""
    info = os.fstat(lower)
    os.mkdir(upper, 0o700, dir_fd=staging)
    os.chmod(upper, stat.S_IMODE(info.st_mode), dir_fd=staging)
    with contextlib.suppress(OSError):
        os.chown(upper, info.st_uid, info.st_gid, dir_fd=staging)
    os.mkdir(work, 0o700, dir_fd=staging)
    base = f"/proc/self/fd/{staging}/"
    _linux.mount_overlay(target, f"/proc/self/fd/{lower}", f"{base}{upper}", f"{base}{work}")


def _new_root(layout: _layout.Layout, through: tuple[str, ...]) -> Cover:
    """A new root on a staging tmpfs, moved over ``/``, then ``chroot`` into it.

    The new root is a fresh mount of the real one: an overlay, or a bind if it
    is read-only. The mounts on the old one are moved over, each with what is
    mounted on it; a writable one gets an overlay in its place, and the mounts
    on that are moved onto the overlay in turn (``Layout.steps``). Moving costs
    less than binding; the old tree stays below the new root, out of reach,
    and goes with the namespace, which costs less than detaching it now.
    The working directory is left at the new root: the caller steps back in.
    """
    held = _hold(path for path, _ in (*layout.steps, *layout.last))
    kept = _hold(through)
    layers: list[Layer] = []
    staging = -1
    try:
        staging_place = layout.staging
        _linux.mount("tmpfs", staging_place, "tmpfs", MountFlag.NOSUID | MountFlag.NODEV,
                     "mode=0700")  # fmt: skip
        staging = _open(staging_place)
        new_root = os.path.join(staging_place, "root")
        os.mkdir(new_root, 0o755)
        for path, how in layout.steps:
            _place(path, how, new_root, held[path], staging, layers)
        for path, fd in kept.items():
            target = new_root + path
            _linux.mount(f"/proc/self/fd/{fd}", target, None, MountFlag.BIND | MountFlag.REC)
        for path, how in layout.last:
            _place(path, how, new_root, held[path], staging, layers)
        os.chdir(new_root)
        _linux.mount(".", "/", None, MountFlag.MOVE)
        os.chroot(".")
    except BaseException:
        Cover(tuple(layers)).close()  # the test's setup fails; its namespace goes with it
        raise
    finally:
        owned = {fd for layer in layers for fd in (layer.lower, layer.staging)}
        for fd in {*held.values(), *kept.values(), staging} - owned - {-1}:
            os.close(fd)
    return Cover(tuple(layers))


def _place(path: str, how: str, new_root: str, fd: int, staging: int, layers: list[Layer]) -> None:
    """One step (``Layout.steps``) for the mount held by ``fd``, at ``path`` below
    ``new_root``; an overlay or a copy takes ``fd`` as what it covers."""
    target = new_root if path == "/" else new_root + path
    if how == "overlay":
        upper = f"upper{len(layers)}"
        _overlay(target, fd, staging, upper, f"work{len(layers)}")
        layers.append(Layer(path, staging, upper, fd))
    elif how == "copy":
        copy = f"file{len(layers)}"
        _copy_file(fd, staging, copy)
        _linux.mount(f"/proc/self/fd/{staging}/{copy}", target, None, MountFlag.BIND)
        layers.append(Layer(path, staging, copy, fd))
    else:
        flags = MountFlag.BIND if how == "bind" else MountFlag.MOVE
        _linux.mount(f"/proc/self/fd/{fd}", target, None, flags)


def _copy_file(real: int, staging: int, name: str) -> None:
    """A file mounted on its own cannot be overlaid: a copy in the staging tmpfs stands in,
    with the real one's content, mode and owner."""
    info = os.fstat(real)
    with open(f"/proc/self/fd/{real}", "rb") as source:
        content = source.read()
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=staging)
    with open(fd, "wb") as copy:
        copy.write(content)
        os.fchown(fd, info.st_uid, info.st_gid)
        os.fchmod(fd, stat.S_IMODE(info.st_mode))


def _hold(paths: Iterable[str]) -> dict[str, int]:
    held: dict[str, int] = {}
    try:
        for path in paths:
            held[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except BaseException:
        for fd in held.values():
            os.close(fd)
        raise
    return held


def _open(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _exists_below(lower: int, path: str) -> bool:
    try:
        os.stat(path, dir_fd=lower, follow_symlinks=False)
    except OSError:
        return False
    return True


def _differs(copy: str, real: str) -> bool:
    ours, theirs = os.stat(copy), os.stat(real)
    if (ours.st_mode, ours.st_uid, ours.st_gid) != (theirs.st_mode, theirs.st_uid, theirs.st_gid):
        return True
    with open(copy, "rb") as one, open(real, "rb") as other:
        return one.read() != other.read()


def _change(info: os.stat_result, below: bool) -> str | None:
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
        return "deleted" if below else None  # a whiteout
    if stat.S_ISDIR(info.st_mode):
        return None if below else "created"
    return "modified" if below else "created"


def _join(mountpoint: str, path: str) -> str:
    return "/" + path if mountpoint == "/" else f"{mountpoint}/{path}"
