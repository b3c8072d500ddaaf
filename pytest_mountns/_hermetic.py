"""Hermetic tests: every writable file system the test sees, behind a copy-on-write overlay.

In the test's namespace, already cut off from the host, a new root is
assembled on a staging tmpfs: for each writable real file system an overlay
(the real one below, a directory of the staging tmpfs above), for the others
(proc, sysfs, devtmpfs, cgroup, read-only mounts) a bind of the mount as it
is, each at its place, parents first. Then ``pivot_root`` into it, and the old
root is detached. The test reads the real files; what it writes, creates,
renames or deletes lands in the upper layers, which vanish with the namespace
and which ``Cover.writes`` walks to say what the test tried to write.

Runs where the namespace's mounts are applied (the forked child, or pytest's
thread in its test's namespace). Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass

from . import _linux, _mountinfo
from ._linux import MountFlag
from ._plan import is_within

PASS_THROUGH = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs",
        "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl",
        "binfmt_misc", "autofs", "efivarfs", "nsfs", "rpc_pipefs", "selinuxfs",
    }
)  # fmt: skip
"""File systems that are not files: bound as they are, never overlaid."""
PASS_THROUGH_BELOW = ("/proc", "/sys")
STAGING_PLACES = ("/tmp", "/var/tmp", "/mnt", "/dev")
"""Where the staging tmpfs is mounted for a moment: any directory will do, as every
mount is held by a descriptor before, and the old tree is dropped after."""


@dataclass(frozen=True)
class Layer:
    """One overlay: where it is, its upper layer, and the real directory below."""

    mountpoint: str
    staging: int
    """A descriptor of the tmpfs that holds the upper layer."""
    upper: str
    """The upper layer's name in that tmpfs."""
    lower: int
    """A descriptor of the real directory (a file system's root, as root), for the audit."""


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
            for directory, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
                relative = os.path.relpath(directory, top)
                for name in sorted(dirs + files):
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    path = os.path.normpath(os.path.join(relative, name))
                    change = _change(info, _exists_below(layer.lower, path))
                    if change is not None:
                        found.append(Write(_join(layer.mountpoint, path), change))
                dirs.sort()
        return found

    def close(self) -> None:
        for layer in self.layers:
            os.close(layer.lower)
            os.close(layer.staging)


def cover(through: tuple[str, ...] = (), readonly_instead: bool = False) -> Cover:
    """Put every writable real file system behind an overlay, in this mount namespace.

    ``through`` are paths that stay the real ones, writable: pytest's basetemp,
    and the sources of the test's writable binds, which write through by design.
    ``readonly_instead``: in a user namespace, where an overlay cannot copy up
    what belongs to ids it does not map (root's directories, EOVERFLOW at the
    first write), each is made read-only where it is instead, never left
    writable, and only the places a user writes to (``user_places``) get an
    overlay of their own.
    """
    entries = _mountinfo.read()
    held = _visible_mounts(entries)
    try:
        if readonly_instead:
            return _in_place(held, through, [entry.mountpoint for entry in entries])
        return _new_root(held, through)
    finally:
        for _, fd, _, _ in held:
            os.close(fd)


def user_places() -> list[str]:
    """Where a user's tests write: home, the temporary directories, the working directory."""
    places = [os.path.expanduser("~"), tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]
    return [*places, os.getcwd()]


def _in_place(
    held: list[tuple[str, int, _mountinfo.MountEntry, bool]],
    through: tuple[str, ...],
    points: list[str],
) -> Cover:
    """In a user namespace: the file systems read-only where they are, an overlay on each
    place the user may write to, where it has no mount below; ``through`` bound back.

    An overlay's own top needs no copy-up, and below it the user's entries copy up
    as they are: so a place of the user's own, or a sticky one like ``/tmp``, works.
    It takes the mode of the directory it covers; its owner shows as the user.
    """
    readonly = [path for path, _, entry, _ in held if _overlaid(path, entry)]
    places: list[str] = []
    for place in dict.fromkeys(os.path.realpath(p) for p in user_places()):
        inside = [path for path in readonly if is_within(place, path)]
        below = [point for point in points if point != place and is_within(point, place)]
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
    kept = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in through]
    layers: list[Layer] = []
    try:
        for path in readonly:
            _linux.set_readonly(path, recursive=False)
        for place, lower in lowers:
            layers.append(_overlay_here(place, lower, os.fstat(lower).st_mode))
        for path, fd in kept:
            _linux.mount(f"/proc/self/fd/{fd}", path, None, MountFlag.BIND | MountFlag.REC)
            _linux.set_readonly(path, False)
    except BaseException:
        for _, lower in lowers[len(layers) :]:
            os.close(lower)
        Cover(tuple(layers)).close()
        raise
    finally:
        for _, fd in kept:
            os.close(fd)
    return Cover(tuple(layers), tuple(path for path in readonly if path not in places))


def _overlay_here(place: str, lower: int, mode: int) -> Layer:
    """A tmpfs over ``place`` for the upper layer, then the overlay over both."""
    _linux.mount("tmpfs", place, "tmpfs", MountFlag.NOSUID | MountFlag.NODEV, "mode=0700")
    staging = _open(place)
    try:
        os.mkdir("upper", stat.S_IMODE(mode), dir_fd=staging)
        os.chmod("upper", stat.S_IMODE(mode), dir_fd=staging)  # past the umask, the sticky bit
        os.mkdir("work", 0o700, dir_fd=staging)
        base = f"/proc/self/fd/{staging}/"
        _linux.mount_overlay(place, f"/proc/self/fd/{lower}", f"{base}upper", f"{base}work")
    except BaseException:
        os.close(staging)
        raise
    return Layer(place, staging, "upper", lower)


def _new_root(
    held: list[tuple[str, int, _mountinfo.MountEntry, bool]], through: tuple[str, ...]
) -> Cover:
    """The overlays and binds on a staging tmpfs, then ``pivot_root`` into them."""
    kept = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in through]
    cwd = os.getcwd()
    layers: list[Layer] = []
    staging = -1
    try:
        staging_place = next(p for p in STAGING_PLACES if os.path.isdir(p))
        _linux.mount("tmpfs", staging_place, "tmpfs", MountFlag.NOSUID | MountFlag.NODEV,
                     "mode=0700")  # fmt: skip
        staging = _open(staging_place)
        new_root = os.path.join(staging_place, "root")
        os.mkdir(new_root, 0o755)
        for index, (path, fd, entry, recursive) in enumerate(held):
            target = new_root + ("" if path == "/" else path)
            if _overlaid(path, entry):
                upper, work = f"upper{index}", f"work{index}"
                os.mkdir(upper, 0o755, dir_fd=staging)
                os.mkdir(work, 0o755, dir_fd=staging)
                base = f"/proc/self/fd/{staging}/"
                lower = f"/proc/self/fd/{fd}"
                _linux.mount_overlay(target, lower, f"{base}{upper}", f"{base}{work}")
                layers.append(Layer(path, os.dup(staging), upper, os.dup(fd)))
            else:
                flags = MountFlag.BIND | (MountFlag.REC if recursive else MountFlag.NONE)
                _linux.mount(f"/proc/self/fd/{fd}", target, None, flags)
        for path, fd in kept:  # while their mounts are still in this namespace
            target = new_root + path
            _linux.mount(f"/proc/self/fd/{fd}", target, None, MountFlag.BIND | MountFlag.REC)
        os.chdir(new_root)
        _linux.pivot_root(".", ".")
        _linux.umount(".", _linux.MNT_DETACH)
    except BaseException:
        Cover(tuple(layers)).close()  # the test's setup fails; its namespace goes with it
        raise
    finally:
        for _, fd in kept:
            os.close(fd)
        if staging >= 0:
            os.close(staging)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    return Cover(tuple(layers))


def _visible_mounts(
    entries: list[_mountinfo.MountEntry],
) -> list[tuple[str, int, _mountinfo.MountEntry, bool]]:
    """Each mount the test can reach, with a descriptor of it, parents first, and whether
    it goes over whole (nothing below it is overlaid: one recursive bind, not one each).

    A mount hidden below another at the same place (or below a mount over one
    of its parents) is not reached by its path: the descriptor's mount, read
    back from ``fdinfo``, tells which one is.
    """
    by_id = {entry.mount_id: entry for entry in entries}
    overlaid = {entry.mountpoint for entry in entries if _overlaid(entry.mountpoint, entry)}
    paths = sorted({entry.mountpoint for entry in entries}, key=_depth)
    whole: list[str] = []
    found = []
    for path in paths:
        if any(is_within(path, top) for top in whole):
            continue
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)  # a mount may be a file's
        except OSError:
            continue
        top = by_id.get(_mount_id(fd))
        if top is None or top.mountpoint != path:
            os.close(fd)
            continue
        recursive = path not in overlaid and not any(
            is_within(other, path) and other != path for other in overlaid
        )
        if recursive:
            whole.append(path)
        found.append((path, fd, top, recursive))
    return found


def _depth(path: str) -> tuple[bool, int, str]:
    return (path != "/", path.count("/"), path)


def _overlaid(path: str, entry: _mountinfo.MountEntry) -> bool:
    if entry.fstype in PASS_THROUGH or "ro" in entry.options[:1]:
        return False
    return not any(is_within(path, top) for top in PASS_THROUGH_BELOW)


def _mount_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as info:
        for line in info:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    return -1


def _open(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _exists_below(lower: int, path: str) -> bool:
    try:
        os.stat(path, dir_fd=lower, follow_symlinks=False)
    except OSError:
        return False
    return True


def _change(info: os.stat_result, below: bool) -> str | None:
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
        return "deleted" if below else None  # a whiteout
    if stat.S_ISDIR(info.st_mode):
        return None if below else "created"
    return "modified" if below else "created"


def _join(mountpoint: str, path: str) -> str:
    return "/" + path if mountpoint == "/" else f"{mountpoint}/{path}"
