"""Resolving a declaration against the file system: where each mount will land, before any fork.

A model of the namespace-to-be follows each path as the kernel will, through
the declared mounts before it (a bind shows its source, a tmpfs nothing,
an overlay the real content) and through symlinks. So it knows, for every
target and every directory the test needs, whether it exists there, and, if
not, whether creating it would write only to memory the test owns (a fresh
tmpfs, a hidden directory, an overlay's upper layer) or to the host: the
latter is a declaration error, and nothing is created. Standard library only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from . import _mountinfo
from ._spec import Declaration, DeclarationError, Mount

_MAX_SYMLINKS = 40  # as the kernel's own limit (ELOOP)
_FORBIDDEN = {
    "/": "would hide the whole file system",
    "/proc": "is the kernel's process file system",
    "/sys": "is the kernel's sysfs",
    "/dev": "holds the device nodes every process needs",
}


@dataclass(frozen=True)
class MountPlan:
    """The mounts of one test, checked against the file system, parents before children."""

    mounts: tuple[Mount, ...] = ()
    propagation: str = "private"
    keep: tuple[str, ...] = ()
    """Host directories a mount covers that stay reachable, bound back (pytest's basetemp)."""
    make: tuple[str, ...] = ()
    """Directories that must exist once mounted (the ``isolated_tmpfs`` mount point)."""
    hermetic: bool = False
    """Every writable file system behind an overlay first (``_hermetic``), these on top."""

    def covers(self, path: str) -> bool:
        """Whether a mount of this plan is at ``path`` or one of its ancestors."""
        return any(is_within(path, mount.target) for mount in self.mounts)


def resolve(
    declaration: Declaration,
    *,
    ids: tuple[int, int] | None = None,
    keep: Mapping[str, str] = {},
    make: Mapping[str, str] = {},
    hermetic: bool = False,
) -> MountPlan:
    """Check every target against the file system and order parents before children.

    ``ids`` (uid, gid) are the only ids a user namespace maps, where it is used.
    ``keep`` and ``make`` map directories the test needs to what they are, for
    the message if they could not be had without writing to the host.
    """
    model = _Model()
    for target in sorted(declaration.mounts, key=_depth):
        model.place(declaration.mounts[target])
    ordered = sorted(model.mounts.values(), key=lambda mount: _depth(mount.target))
    _check_order(model, ordered)
    for path, what in {**keep, **make}.items():
        model.check_reachable(path, what)
    covered = [path for path in keep if hermetic or any(is_within(path, m.target) for m in ordered)]
    plan = MountPlan(
        tuple(ordered),
        declaration.propagation or "private",
        keep=tuple(covered),
        make=tuple(make),
        hermetic=hermetic,
    )
    if ids is not None:
        _check_mapped_ids(plan, *ids)
        _check_overlays_in_a_user_namespace(model, plan, *ids)
    return plan


def is_within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


@dataclass(frozen=True)
class _Spot:
    """Where a path lands in the namespace the plan builds."""

    path: str
    """In the namespace, symlinks resolved."""
    host: str | None
    """The host path it shows; None in memory the test owns, or where nothing is."""
    exists: bool
    owned: bool
    """Creating it would write only to memory the test owns."""
    within: Mount | None
    """The innermost declared mount it lies in."""


@dataclass
class _Model:
    """The namespace as the declared mounts, placed so far, make it."""

    mounts: dict[str, Mount] = field(default_factory=dict)
    directories: dict[str, bool] = field(default_factory=dict)
    """Per mount target: whether the mount shows a directory."""
    hosts: dict[str, str | None] = field(default_factory=dict)
    """Per mount target: the host path it showed before its mount (an overlay's lower)."""

    def place(self, mount: Mount) -> None:
        argument = f"{mount.kind} target {mount.target!r}"
        source = _source(mount)
        spot = self.locate(mount.target, argument)
        if spot.path != mount.target:
            argument += f" (resolves to {spot.path!r})"
        _check_allowed(spot.path, argument, mount.kind)
        directory = self._check_target(spot, mount.kind, source, argument)
        placed = replace(mount, target=spot.path, source=source)
        if self.mounts.get(spot.path, placed) != placed:
            raise DeclarationError(argument, "names the same path as another target")
        self.mounts[spot.path] = placed
        self.directories[spot.path] = directory
        self.hosts[spot.path] = spot.host

    def locate(self, path: str, argument: str) -> _Spot:
        for _ in range(_MAX_SYMLINKS):
            spot = self._walk(path)
            if isinstance(spot, _Spot):
                return spot
            path = spot
        raise DeclarationError(argument, "has too many levels of symbolic links")

    def check_reachable(self, path: str, what: str) -> None:
        spot = self.locate(path, what)
        if not spot.exists and not spot.owned:
            raise DeclarationError(
                f"{what} {path!r}", f"is not reachable under the declared mounts: {_why_not(spot)}"
            )

    def _walk(self, path: str) -> _Spot | str:
        """Follow ``path`` component by component; a symlink gives the path to follow instead."""
        parts = [part for part in path.split("/") if part]
        here, exists, owned = "/", True, False
        host: str | None = "/"
        within = self.mounts.get("/")
        for index, name in enumerate(parts):
            here = os.path.join(here, name)
            if host is not None:
                candidate = os.path.join(host, name)
                try:
                    info = os.lstat(candidate)
                except (FileNotFoundError, NotADirectoryError):
                    host, exists = None, False
                else:
                    if stat.S_ISLNK(info.st_mode):
                        link = os.readlink(candidate)
                        start = "/" if link.startswith("/") else os.path.dirname(here)
                        joined = os.path.join(start, link, *parts[index + 1 :])
                        return "/" + os.path.normpath(joined).lstrip("/")
                    host = candidate
            else:
                exists = False
            mount = self.mounts.get(here)
            if mount is not None:
                exists, within = True, mount
                host, owned = self._inside(mount, host)
            if not exists and not owned:
                rest = os.path.join(here, *parts[index + 1 :])
                return _Spot(rest, None, False, False, within)
        return _Spot(here, host, exists, owned, within)

    def _inside(self, mount: Mount, host: str | None) -> tuple[str | None, bool]:
        """What is behind a mount point: (the host path it shows, whether writes stay ours)."""
        if mount.kind == "tmpfs" or (mount.kind == "hide" and self.directories[mount.target]):
            return None, True
        if mount.kind in ("bind", "ro_bind"):
            return mount.source, False
        if mount.kind == "overlay":
            return host, True  # reads from the real directory, writes to the upper layer
        if mount.kind == "hide":
            return None, False  # an empty file: nothing below
        return host, False  # readonly: the same content, read-only

    def _check_target(self, spot: _Spot, kind: str, source: str | None, argument: str) -> bool:
        """Whether the target is (or will be made) a directory; raises where it cannot be."""
        if not spot.exists:
            if not spot.owned:
                raise DeclarationError(argument, f"does not exist ({_why_not(spot)})")
            if kind == "hide":
                raise DeclarationError(argument, "does not exist: there is nothing to hide")
            return source is None or os.path.isdir(source)  # made inside, like its source
        if spot.host is not None:
            try:
                mode = os.stat(spot.host).st_mode
            except OSError as error:
                raise DeclarationError(argument, f"cannot be checked: {error.strerror}") from None
            directory = stat.S_ISDIR(mode)
            regular = stat.S_ISREG(mode)
        else:
            directory = self.directories[spot.path]
            regular = not directory
        if kind in ("tmpfs", "overlay") and not directory:
            raise DeclarationError(argument, f"is not a directory (a {kind} needs a directory)")
        if kind == "hide" and not (directory or regular):
            raise DeclarationError(argument, "is neither a directory nor a regular file")
        if source is not None and os.path.isdir(source) != directory:
            kinds = ("a directory", "not a directory")
            raise DeclarationError(
                argument,
                f"is {kinds[not directory]} but its source {source!r} is "
                f"{kinds[directory]}; a bind needs the same kind on both sides",
            )
        return directory


def _why_not(spot: _Spot) -> str:
    """Why a missing path cannot be made without writing to the host."""
    within = spot.within
    if within is not None and within.kind in ("bind", "ro_bind"):
        return (
            f"it would have to be created on the host, in {within.source!r}, the source of "
            f"{within.kind} target {within.target!r}; create it there, or declare a tmpfs"
        )
    if within is not None and within.kind == "hide":
        return f"hide target {within.target!r} is a file"
    if within is not None and within.kind == "readonly":
        return f"it would have to be created below readonly target {within.target!r}, on the host"
    return "the plugin never creates anything on the host"


def _source(mount: Mount) -> str | None:
    """A bind's source, resolved as the host has it: it is opened before anything is mounted."""
    if mount.source is None:
        return None
    resolved = os.path.realpath(mount.source)
    if not os.path.exists(resolved):
        raise DeclarationError(
            f"{mount.kind}[{mount.target!r}] source {mount.source!r}",
            "does not exist (relative sources start at the test file's directory)",
        )
    return resolved


def _check_order(placed: _Model, ordered: Iterable[Mount]) -> None:
    """The kernel resolves each target when it mounts it: through the mounts before it only."""
    model = _Model(directories=placed.directories)
    for mount in ordered:
        argument = f"{mount.kind} target {mount.target!r}"
        found = model.locate(mount.target, argument).path
        if found != mount.target:
            raise DeclarationError(
                argument,
                f"leads to {found!r} once the mounts above it are in place (a symlink "
                "through another declared mount); declare the path it should be",
            )
        model.mounts[mount.target] = mount


def _check_allowed(path: str, argument: str, kind: str) -> None:
    if kind == "readonly" and path == "/":
        return  # a read-only root, with writable mounts on top, is a use of its own
    for forbidden, why in _FORBIDDEN.items():
        inside = forbidden in ("/proc", "/sys") and is_within(path, forbidden)
        if path == forbidden or inside:
            raise DeclarationError(argument, f"cannot be a mount target: {forbidden} {why}")


def _check_mapped_ids(plan: MountPlan, uid: int, gid: int) -> None:
    """In a user namespace only the caller's own uid and gid exist; the kernel says EINVAL."""
    for mount in plan.mounts:
        for key, value, own in (("uid", mount.options.uid, uid), ("gid", mount.options.gid, gid)):
            if value is not None and value != own:
                raise DeclarationError(
                    f"tmpfs[{mount.target!r}] {key}={value}",
                    f"in a user namespace only your own {key} ({own}) is mapped; "
                    "drop the option, or run pytest as root",
                )


def _check_overlays_in_a_user_namespace(model: _Model, plan: MountPlan, uid: int, gid: int) -> None:
    """Two things the kernel refuses an overlay in a user namespace, said before the fork.

    Mounts below the directory are locked there, and an overlay would show what
    they cover: EINVAL. And it cannot copy up what belongs to unmapped ids
    (EOVERFLOW): a change the test may make (to what it can write, by the mode
    bits) needs a copy of the changed entry and of each directory above it,
    owners included.
    """
    overlays = [m for m in plan.mounts if m.kind == "overlay" and model.hosts[m.target]]
    if not overlays:
        return  # the mount table is read only where it matters: not once per test
    groups = {gid, *os.getgroups()}
    points = [entry.mountpoint for entry in _mountinfo.read()]
    for mount in overlays:
        lower = model.hosts[mount.target]
        assert lower is not None
        below = sorted(point for point in points if point != lower and is_within(point, lower))
        if below:
            raise DeclarationError(
                f"overlay target {mount.target!r}",
                f"in a user namespace the mounts below it are locked ({below[0]!r} is one), "
                "and the kernel will not overlay them (EINVAL); use a tmpfs or a bind "
                "instead, or run pytest as root",
            )
        found = _unmappable_change(lower, uid, gid, groups)
        if found is not None:
            foreign, writable = found
            info = os.lstat(foreign)
            owner = f"{foreign!r} belongs to uid {info.st_uid}, gid {info.st_gid}"
            change = (
                "changing it, as you may"
                if writable == foreign
                else f"changing {writable!r} below it, as you may"
            )
            raise DeclarationError(
                f"overlay target {mount.target!r}",
                f"in a user namespace only your own uid ({uid}) and gid ({gid}) are mapped; "
                f"{owner}: {change}, would fail (EOVERFLOW); use a tmpfs or a bind instead, "
                "or run pytest as root",
            )


def _unmappable_change(top: str, uid: int, gid: int, groups: set[int]) -> tuple[str, str] | None:
    """(an entry of unmapped owner, a writable entry at or below it), or None.

    The overlay's own top needs no copy-up: its upper layer is already there.
    """
    pending: list[tuple[str, str | None]] = [(top, None)]
    while pending:
        path, foreign = pending.pop()
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if path != top and foreign is None and (info.st_uid != uid or info.st_gid != gid):
            foreign = path
        if foreign is not None and _writable(info, uid, groups):
            return foreign, path
        if stat.S_ISDIR(info.st_mode):
            try:
                names = os.listdir(path)
            except OSError:
                continue  # what cannot be listed cannot be reached to change either
            pending.extend((os.path.join(path, name), foreign) for name in names)
    return None


def _writable(info: os.stat_result, uid: int, groups: set[int]) -> bool:
    if stat.S_ISLNK(info.st_mode):
        return False
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IWUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IWGRP)
    return bool(info.st_mode & stat.S_IWOTH)


def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")
