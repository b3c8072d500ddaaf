"""Hermetic tests: every writable file system the test sees, behind a copy-on-write overlay.

In the test's namespace, already cut off from the host, a new root is
assembled on a staging tmpfs: an overlay of the real root (the real one below,
a directory of the staging tmpfs above), and onto it the mounts of the old one,
moved, each with what is mounted on it; a writable real file system among them
gets an overlay of its own in its place. Proc, sysfs, devtmpfs, cgroup and
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
from collections.abc import Iterable, Iterator
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
    through: tuple[str, ...] = (), readonly_instead: bool = False, layout: Layout | None = None
) -> Cover:
    """Put every writable real file system behind an overlay, in this mount namespace.

    ``through`` are paths that stay the real ones, writable: pytest's basetemp,
    and the sources of the test's writable binds, which write through by design.
    ``readonly_instead``: in a user namespace, where an overlay cannot copy up
    what belongs to ids it does not map (root's directories, EOVERFLOW at the
    first write), each is made read-only where it is instead, never left
    writable, and only the places a user writes to (``user_places``) get an
    overlay of their own. ``layout``: this namespace's, if known (``Watched``).
    """
    layout = layout or _work_out(_mountinfo.read())
    if readonly_instead:
        return _in_place(layout, through)
    return _new_root(layout, through)


def user_places() -> list[str]:
    """Where a user's tests write: home, the temporary directories, the working directory."""
    places = [os.path.expanduser("~"), tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]
    return [*places, os.getcwd()]


def _in_place(layout: Layout, through: tuple[str, ...]) -> Cover:
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


def _new_root(layout: Layout, through: tuple[str, ...]) -> Cover:
    """A new root on a staging tmpfs, moved over ``/``, then ``chroot`` into it.

    The new root is a fresh mount of the real one: an overlay, or a bind if it
    is read-only. The mounts on the old one are moved over, each with what is
    mounted on it; a writable one gets an overlay in its place, and the mounts
    on that are moved onto the overlay in turn (``Layout.steps``). Moving costs
    less than binding; the old tree stays below the new root, out of reach,
    and goes with the namespace, which costs less than detaching it now.
    """
    held = _hold((path for path, _ in (*layout.steps, *layout.last)))
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
        for path, overlay in layout.steps:
            _place(path, overlay, new_root, held[path], staging, layers)
        for path, fd in kept:
            target = new_root + path
            _linux.mount(f"/proc/self/fd/{fd}", target, None, MountFlag.BIND | MountFlag.REC)
        for path, overlay in layout.last:
            _place(path, overlay, new_root, held[path], staging, layers)
        os.chdir(new_root)
        _linux.mount(".", "/", None, MountFlag.MOVE)
        os.chroot(".")
    except BaseException:
        Cover(tuple(layers)).close()  # the test's setup fails; its namespace goes with it
        raise
    finally:
        owned = {fd for layer in layers for fd in (layer.lower, layer.staging)}
        for fd in {*held.values(), *(fd for _, fd in kept), staging} - owned - {-1}:
            os.close(fd)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    return Cover(tuple(layers))


def _place(
    path: str, overlay: bool, new_root: str, fd: int, staging: int, layers: list[Layer]
) -> None:
    """One step: an overlay of the mount held by ``fd`` at ``path`` below ``new_root`` (it
    takes ``fd`` as its lower layer), or the mount moved there (the root: bound there)."""
    target = new_root if path == "/" else new_root + path
    if overlay:
        upper, work = f"upper{len(layers)}", f"work{len(layers)}"
        os.mkdir(upper, 0o755, dir_fd=staging)
        os.mkdir(work, 0o755, dir_fd=staging)
        base = f"/proc/self/fd/{staging}/"
        _linux.mount_overlay(target, f"/proc/self/fd/{fd}", f"{base}{upper}", f"{base}{work}")
        layers.append(Layer(path, staging, upper, fd))
    else:
        flags = MountFlag.BIND if path == "/" else MountFlag.MOVE
        _linux.mount(f"/proc/self/fd/{fd}", target, None, flags)


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


@dataclass(frozen=True)
class Reachable:
    """A mount the test can reach by its path, and the reachable ones on it."""

    path: str
    overlaid: bool
    children: tuple[Reachable, ...]

    def walk(self) -> Iterator[Reachable]:
        """This mount and every one on it, parents first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Layout:
    """The mount table as the cover needs it, and what it does with it."""

    root: Reachable
    points: tuple[str, ...]
    """Every mount point, hidden ones too."""
    steps: tuple[tuple[str, bool], ...]
    """The new root's making, as ``(path, overlaid)``: the root first, a fresh mount; then each
    mount that must be moved onto its new parent, and each overlay, parents first."""
    last: tuple[tuple[str, bool], ...]
    """The same for ``/proc`` and what is on it, last: every descriptor is named through it."""


def _steps(root: Reachable) -> tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]]:
    def visit(mount: Reachable, carried: bool, into: list[tuple[str, bool]]) -> None:
        if mount.overlaid or not carried:
            into.append((mount.path, mount.overlaid))
        for child in mount.children:  # an overlay hides what is on its lower layer: moved
            visit(child, carried=not mount.overlaid, into=into)

    steps: list[tuple[str, bool]] = [("/", root.overlaid)]
    last: list[tuple[str, bool]] = []
    for child in root.children:  # the root is a fresh mount: all on it is moved
        visit(child, carried=False, into=last if is_within("/proc", child.path) else steps)
    return tuple(steps), tuple(last)


class Watched:
    """The layout of one namespace's mounts, worked out again only when it changed.

    pytest's process asks as it prepares each hermetic test, whose namespace
    will be a copy of its own; a ``poll`` says whether a mount or unmount
    happened since, which costs far less than reading and working out the table.
    """

    def __init__(self) -> None:
        self._namespace = -1
        self._watch: _mountinfo.Watch | None = None
        self._layout: Layout | None = None

    def layout(self) -> Layout:
        """The calling thread's namespace's layout (another namespace: a new watch)."""
        namespace = _linux.mount_namespace_id()
        if self._watch is None or namespace != self._namespace:
            self._namespace, self._watch, self._layout = namespace, _mountinfo.Watch(), None
        elif self._watch.touched():
            self._layout = None
        if self._layout is None:
            self._layout = _work_out(_mountinfo.read())
        return self._layout


def _work_out(entries: list[_mountinfo.MountEntry]) -> Layout:
    """Which mounts are reachable, and on which: a mount hidden below another at the same
    place (or below a mount over one of its parents) is not reached by its path, and the
    mount its descriptor is on, read back from ``fdinfo``, tells which one is."""
    by_id = {entry.mount_id: entry for entry in entries}
    reachable: list[tuple[str, bool]] = []
    for path in sorted({entry.mountpoint for entry in entries}, key=_depth):
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)  # a mount may be a file's
        except OSError:
            continue
        try:
            top = by_id.get(_mount_id(fd))
        finally:
            os.close(fd)
        if top is not None and top.mountpoint == path:
            reachable.append((path, _overlaid(path, top)))
    root = _tree(reachable)
    return Layout(root, tuple(entry.mountpoint for entry in entries), *_steps(root))


def _tree(reachable: list[tuple[str, bool]]) -> Reachable:
    """Each reachable mount below the nearest reachable one that contains its path."""
    children: dict[str, list[str]] = {path: [] for path, _ in reachable}
    overlaid = dict(reachable)
    for path, _ in reachable[1:]:
        parent = max((p for p in children if p != path and is_within(path, p)), key=len)
        children[parent].append(path)

    def build(path: str) -> Reachable:
        return Reachable(path, overlaid[path], tuple(build(child) for child in children[path]))

    return build("/")


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
