"""Parsing and validating mount declarations, in the parent, before any fork.

Everything a declaration can get wrong is caught here with a message that
names the argument and the reason, because the kernel answers most mistakes
with a bare EINVAL. Standard library only.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MARKER_KEYWORDS = ("tmpfs",)
TMPFS_OPTIONS = ("size", "nr_inodes", "mode", "uid", "gid", "ro", "noexec")
_ALWAYS_ON = ("nosuid", "nodev")
_FLAGS = ("ro", "noexec")
_MAX_BYTES = 2**63 - 1
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to the kernel
_AMOUNT = re.compile(r"(?P<number>[0-9]+)(?:(?P<suffix>[kKmMgG])|(?P<percent>%))?")
_MULTIPLIER = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_OCTAL = re.compile(r"[0-7]{1,4}")
_DECIMAL = re.compile(r"[0-9]+")


class DeclarationError(ValueError):
    """A mount declaration that cannot be applied; says which argument and why."""

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"{argument}: {reason}")
        self.argument = argument
        self.reason = reason


@dataclass(frozen=True)
class TmpfsOptions:
    size: str | None = None
    nr_inodes: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    ro: bool = False
    noexec: bool = False

    def mount_data(self) -> str:
        """The data string for mount(2), as mount(8) would write it."""
        parts = []
        if self.size is not None:
            parts.append(f"size={self.size}")
        if self.nr_inodes is not None:
            parts.append(f"nr_inodes={self.nr_inodes}")
        if self.mode is not None:
            parts.append(f"mode={self.mode:04o}")
        if self.uid is not None:
            parts.append(f"uid={self.uid}")
        if self.gid is not None:
            parts.append(f"gid={self.gid}")
        return ",".join(parts)


@dataclass(frozen=True)
class Tmpfs:
    target: str
    options: TmpfsOptions


@dataclass(frozen=True)
class MountPlan:
    """The mounts of one test, parents before children."""

    tmpfs: tuple[Tmpfs, ...] = ()

    def covers(self, path: str) -> bool:
        """Whether a mount of this plan hides ``path`` or one of its ancestors."""
        return any(_is_within(path, mount.target) for mount in self.tmpfs)


Declaration = dict[str, TmpfsOptions]


def parse_marker(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Declaration:
    """Turn one ``mountns`` marker's arguments into target -> options."""
    unknown = sorted(set(kwargs) - set(MARKER_KEYWORDS))
    if unknown:
        raise DeclarationError(
            f"keyword {unknown[0]}=",
            f"unknown keyword (supported: {', '.join(k + '=' for k in MARKER_KEYWORDS)})",
        )
    declaration: Declaration = {}
    for value in args:
        _add(declaration, normalize_path(value, "tmpfs target"), TmpfsOptions())
    tmpfs = kwargs.get("tmpfs")
    if tmpfs is None:
        return declaration
    if isinstance(tmpfs, Mapping):
        for key, options in tmpfs.items():
            target = normalize_path(key, "tmpfs target")
            _add(declaration, target, parse_tmpfs_options(options, f"tmpfs[{target!r}]"))
    elif isinstance(tmpfs, (list, tuple)):
        for value in tmpfs:
            _add(declaration, normalize_path(value, "tmpfs target"), TmpfsOptions())
    else:
        raise DeclarationError(
            "tmpfs=",
            f"must be a list of paths or a mapping path -> options, not {type(tmpfs).__name__}",
        )
    return declaration


def _add(declaration: Declaration, target: str, options: TmpfsOptions) -> None:
    if declaration.get(target, options) != options:
        raise DeclarationError(
            f"tmpfs target {target!r}", "declared twice in one marker with different options"
        )
    declaration[target] = options


def merge(closest_first: Iterable[Declaration]) -> Declaration:
    """Merge the declarations of an item's markers; the closest one wins per target."""
    merged: Declaration = {}
    for declaration in reversed(list(closest_first)):
        merged.update(declaration)
    return merged


def normalize_path(value: object, argument: str) -> str:
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise DeclarationError(
            f"{argument} {value!r}", f"must be a str or os.PathLike, not {type(value).__name__}"
        )
    path = os.fspath(value)
    if not isinstance(path, str):
        raise DeclarationError(f"{argument} {value!r}", "must be a text path, not bytes")
    if not path or "\0" in path:
        raise DeclarationError(f"{argument} {path!r}", "is empty or contains a NUL byte")
    if not path.startswith("/"):
        raise DeclarationError(f"{argument} {path!r}", "must be an absolute path")
    if ".." in path.split("/"):
        raise DeclarationError(f"{argument} {path!r}", "must not contain '..' components")
    return "/" + os.path.normpath(path).lstrip("/")


def parse_tmpfs_options(options: object, argument: str) -> TmpfsOptions:
    """Options as mount(8) writes them ("size=16m,mode=0700,ro") or as a dict."""
    if isinstance(options, str):
        items: dict[str, object] = {}
        for part in options.split(","):
            key, has_value, value = part.strip().partition("=")
            if not key:
                raise DeclarationError(f"{argument} {options!r}", "has an empty option")
            if key in items:
                raise DeclarationError(f"{argument} {key}", "given twice")
            if key in _FLAGS or key in _ALWAYS_ON:
                if has_value:
                    raise DeclarationError(
                        f"{argument} {part!r}", f"{key} is a flag, not key=value"
                    )
                items[key] = True
            else:
                items[key] = value if has_value else None
        return _options_from_items(items, argument)
    if isinstance(options, Mapping):
        return _options_from_items(dict(options), argument)
    if options is None:
        return TmpfsOptions()
    raise DeclarationError(
        argument, f"options must be a str or a dict, not {type(options).__name__}"
    )


def _options_from_items(items: dict[Any, object], argument: str) -> TmpfsOptions:
    parsed: dict[str, Any] = {}
    for key, value in items.items():
        where = f"{argument} {key}={value!r}"
        if key in _ALWAYS_ON:
            if value is not True:
                raise DeclarationError(where, f"{key} is always on and cannot be turned off")
        elif key in _FLAGS:
            if not isinstance(value, bool):
                raise DeclarationError(where, "must be True or False")
            parsed[key] = value
        elif key in ("size", "nr_inodes"):
            parsed[key] = parse_amount(value, where, allow_percent=True)
        elif key == "mode":
            parsed[key] = _parse_mode(value, where)
        elif key in ("uid", "gid"):
            parsed[key] = _parse_id(value, where)
        else:
            raise DeclarationError(
                f"{argument} {key}", f"unknown option (allowed: {', '.join(TMPFS_OPTIONS)})"
            )
    return TmpfsOptions(**parsed)


def parse_amount(value: object, where: str, *, allow_percent: bool) -> str:
    """A size as the kernel's memparse reads it, checked so it cannot mean "unlimited"."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DeclarationError(where, f"must be an int or a str, not {type(value).__name__}")
    text = str(value)
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise DeclarationError(
            where, "must be a positive number of bytes, optionally with k, m or g, or N%"
        )
    number = int(match["number"])
    if match["percent"]:
        if not allow_percent or not 1 <= number <= 100:
            raise DeclarationError(where, "a percentage must be between 1% and 100%")
        return text
    total = number * _MULTIPLIER[(match["suffix"] or "").lower()]
    if total == 0:
        raise DeclarationError(where, "0 would mean unlimited; give a positive amount")
    if total > _MAX_BYTES:
        raise DeclarationError(where, "is too large (the limit is 2**63 - 1)")
    return text.lower()


def _parse_mode(value: object, where: str) -> int:
    if isinstance(value, str) and _OCTAL.fullmatch(value):
        return int(value, 8)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o7777:
        return value
    raise DeclarationError(where, "must be octal digits like '0700' or an int up to 0o7777")


def _parse_id(value: object, where: str) -> int:
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_ID:
        return value
    raise DeclarationError(where, f"must be a number between 0 and {_MAX_ID}")


_FORBIDDEN = {
    "/": "would hide the whole file system",
    "/proc": "is the kernel's process file system",
    "/sys": "is the kernel's sysfs",
    "/dev": "holds the device nodes every process needs",
}


def resolve(declaration: Declaration) -> MountPlan:
    """Check every target against the file system and order parents before children.

    Symlinks are resolved, as the kernel would follow them. A target below
    another declared target need not exist on the host: it is created inside
    that fresh tmpfs, in the namespace. Nothing on the host is created.
    """
    real_of: dict[str, str] = {}
    resolved: dict[str, TmpfsOptions] = {}
    for target in sorted(declaration, key=_depth):
        outer = max((t for t in real_of if _is_within(target, t)), key=len, default=None)
        real = os.path.realpath(target) if outer is None else real_of[outer] + target[len(outer) :]
        argument = f"tmpfs target {target!r}"
        if real != target:
            argument += f" (resolves to {real!r})"
        _check_allowed(real, argument)
        if outer is None:
            _check_directory(real, argument)
        if resolved.get(real, declaration[target]) != declaration[target]:
            raise DeclarationError(argument, "names the same directory as another target")
        real_of[target] = real
        resolved[real] = declaration[target]
    ordered = sorted(resolved, key=_depth)
    return MountPlan(tuple(Tmpfs(target, resolved[target]) for target in ordered))


def check_mapped_ids(plan: MountPlan, uid: int, gid: int) -> None:
    """In a user namespace only the caller's own uid and gid exist; the kernel says EINVAL."""
    for mount in plan.tmpfs:
        for key, value, own in (("uid", mount.options.uid, uid), ("gid", mount.options.gid, gid)):
            if value is not None and value != own:
                raise DeclarationError(
                    f"tmpfs[{mount.target!r}] {key}={value}",
                    f"in a user namespace only your own {key} ({own}) is mapped; "
                    "drop the option, or run pytest as root",
                )


def _depth(path: str) -> int:
    return path.count("/")


def _check_allowed(path: str, argument: str) -> None:
    for forbidden, why in _FORBIDDEN.items():
        inside = forbidden in ("/proc", "/sys") and _is_within(path, forbidden)
        if path == forbidden or inside:
            raise DeclarationError(argument, f"cannot be a mount target: {forbidden} {why}")


def _check_directory(target: str, argument: str) -> None:
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        raise DeclarationError(
            argument, "does not exist (the plugin never creates directories on the host)"
        ) from None
    except OSError as error:
        raise DeclarationError(argument, f"cannot be checked: {error.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise DeclarationError(argument, "is not a directory (a tmpfs needs a directory)")


def _is_within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")
