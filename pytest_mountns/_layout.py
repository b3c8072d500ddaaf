"""The mount table as a hermetic test's cover needs it: which mounts a test can reach,
which of them are writable real file systems, and the steps that build the new root.

Worked out in pytest's namespace, of which each test's is a copy, and again
only when its table changed (``Watched``). Standard library only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from . import _mountinfo
from ._plan import is_within

PASS_THROUGH = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs",
        "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl",
        "binfmt_misc", "autofs", "efivarfs", "nsfs", "rpc_pipefs", "selinuxfs",
    }
)  # fmt: skip
"""File systems that are not files: they stay as they are, never overlaid."""
PASS_THROUGH_BELOW = ("/proc", "/sys")
STAGING_PLACES = ("/tmp", "/var/tmp", "/mnt", "/dev")
"""Where the staging tmpfs of the upper layers is mounted: the first that is a directory.
Any will do, as every mount the cover moves is held by a descriptor before; the
audit looks below through a copy of each real mount (``_linux.clone_mount``)."""


@dataclass(frozen=True)
class Reachable:
    """A mount the test can reach by its path, and the reachable ones on it."""

    path: str
    overlaid: bool
    """A writable real file system (or a writable file mounted on its own)."""
    form: str
    """What is mounted there: ``directory``, ``file`` (a regular one) or ``other``."""
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
    steps: tuple[tuple[str, str], ...]
    """The new root's making, as ``(path, how)``, parents first: the root first, a fresh
    ``overlay`` or ``bind``; then each mount ``move``d onto its new parent, each ``overlay``,
    and each writable file mounted on its own (Docker's ``/etc/hosts``), ``copy``."""
    last: tuple[tuple[str, str], ...]
    """The same for ``/proc`` and what is on it, last: every descriptor is named through it."""
    staging: str
    """Where the staging tmpfs goes (``STAGING_PLACES``)."""


def _steps(root: Reachable) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    def visit(mount: Reachable, carried: bool, into: list[tuple[str, str]]) -> None:
        covered = mount.overlaid and mount.form != "other"  # a socket, say: passed through
        if covered:
            into.append((mount.path, "overlay" if mount.form == "directory" else "copy"))
        elif not carried:
            into.append((mount.path, "move"))
        for child in mount.children:  # an overlay hides what is on its lower layer: moved
            visit(child, carried=not covered, into=into)

    steps: list[tuple[str, str]] = [("/", "overlay" if root.overlaid else "bind")]
    last: list[tuple[str, str]] = []
    for child in root.children:  # the root is a fresh mount: all on it is moved
        visit(child, carried=False, into=last if is_within("/proc", child.path) else steps)
    return tuple(steps), tuple(last)


class Watched:
    """The layout of one namespace's mounts, worked out again only when it changed.

    pytest's process asks as it prepares each hermetic test, whose namespace
    will be a copy of its own; a ``poll`` says whether a mount or unmount
    happened since, which costs far less than reading and working out the table.
    The watch is opened at the first call, in the namespace every later call is
    made in: pytest's (the session's state, which holds this, is made at
    configure, once the session's user namespace, if any, is entered).
    """

    def __init__(self) -> None:
        self._watch: _mountinfo.Watch | None = None
        self._layout: Layout | None = None

    def layout(self) -> Layout:
        if self._watch is None:
            self._watch = _mountinfo.Watch()
        elif self._watch.touched():
            self._layout = None
        if self._layout is None:
            self._layout = work_out(_mountinfo.read())
        return self._layout


def work_out(entries: list[_mountinfo.MountEntry]) -> Layout:
    """Which mounts are reachable, and on which: a mount hidden below another at the same
    place (or below a mount over one of its parents) is not reached by its path, and the
    mount its descriptor is on, read back from ``fdinfo``, tells which one is."""
    by_id = {entry.mount_id: entry for entry in entries}
    reachable: list[tuple[str, bool, str]] = []
    for path in sorted({entry.mountpoint for entry in entries}, key=_depth):
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)  # a mount may be a file's
        except OSError:
            continue
        try:
            top = by_id.get(_mount_id(fd))
            form = _form(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        if top is not None and top.mountpoint == path:
            reachable.append((path, _overlaid(path, top), form))
    root = _tree(reachable)
    points = tuple(entry.mountpoint for entry in entries)
    staging = next(place for place in STAGING_PLACES if os.path.isdir(place))
    return Layout(root, points, *_steps(root), staging)


def _tree(reachable: list[tuple[str, bool, str]]) -> Reachable:
    """Each reachable mount below the nearest reachable one that contains its path."""
    children: dict[str, list[str]] = {path: [] for path, _, _ in reachable}
    found = {path: (overlaid, form) for path, overlaid, form in reachable}
    for path, _, _ in reachable[1:]:
        parent = max((p for p in children if p != path and is_within(path, p)), key=len)
        children[parent].append(path)

    def build(path: str) -> Reachable:
        below = tuple(build(child) for child in children[path])
        return Reachable(path, *found[path], below)

    return build("/")


def _form(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    return "file" if stat.S_ISREG(mode) else "other"


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
