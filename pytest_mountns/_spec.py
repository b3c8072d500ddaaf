"""Parsing and validating mount declarations, in the parent, before any fork.

Everything a declaration can get wrong on its own is caught here with a
message that names the argument and the reason, because the kernel answers
most mistakes with a bare EINVAL. What depends on the file system is
checked later, just before the test runs (``_plan``). Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("tmpfs", "bind", "ro_bind", "readonly", "hide", "overlay")
MARKER_KEYWORDS = (*KINDS, "propagation", "timeout", "fork", "hermetic")
PROPAGATIONS = ("private", "slave")
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
class Mount:
    """One declared mount: what goes on ``target`` in the test's namespace."""

    kind: str
    target: str
    source: str | None = None
    """The host path a ``bind`` or ``ro_bind`` shows at the target (absolute; ``_plan``
    resolves its symlinks)."""
    options: TmpfsOptions = TmpfsOptions()


@dataclass(frozen=True)
class Declaration:
    """An item's markers, merged: target -> mount, and the propagation asked for."""

    mounts: dict[str, Mount] = field(default_factory=dict)
    propagation: str | None = None
    timeout: float | None = None
    fork: bool | None = None
    """False: run in pytest's own thread (in-process mode); True: in a forked child."""
    hermetic: bool | None = None
    """True: every writable file system behind an overlay; None: as the session says."""


def parse_marker(args: tuple[Any, ...], kwargs: Mapping[str, Any], base: str) -> Declaration:
    """Turn one ``mountns`` marker's arguments into a declaration.

    Relative ``bind``/``ro_bind`` sources resolve against ``base``, the
    directory of the test's file.
    """
    unknown = sorted(set(kwargs) - set(MARKER_KEYWORDS))
    if unknown:
        supported = ", ".join(keyword + "=" for keyword in MARKER_KEYWORDS)
        raise DeclarationError(
            f"keyword {unknown[0]}=", f"unknown keyword (supported: {supported})"
        )
    mounts: dict[str, Mount] = {}
    for value in args:
        _add(mounts, Mount("tmpfs", normalize_path(value, "tmpfs target")))
    tmpfs = kwargs.get("tmpfs")
    if isinstance(tmpfs, Mapping):
        for key, options in tmpfs.items():
            target = normalize_path(key, "tmpfs target")
            _add(
                mounts,
                Mount("tmpfs", target, options=parse_tmpfs_options(options, f"tmpfs[{target!r}]")),
            )
    elif tmpfs is not None:
        for value in _paths(tmpfs, "tmpfs=", "a list of paths or a mapping path -> options"):
            _add(mounts, Mount("tmpfs", normalize_path(value, "tmpfs target")))
    for kind in ("bind", "ro_bind"):
        pairs = kwargs.get(kind)
        if pairs is None:
            continue
        if not isinstance(pairs, Mapping):
            raise DeclarationError(
                f"{kind}=", f"must be a mapping target -> source, not {type(pairs).__name__}"
            )
        for key, source in pairs.items():
            target = normalize_path(key, f"{kind} target")
            _add(
                mounts,
                Mount(kind, target, source=source_path(source, f"{kind}[{target!r}] source", base)),
            )
    for kind in ("readonly", "hide", "overlay"):
        paths = kwargs.get(kind)
        if paths is not None:
            for value in _paths(paths, f"{kind}=", "a list of paths"):
                _add(mounts, Mount(kind, normalize_path(value, f"{kind} target")))
    propagation = kwargs.get("propagation")
    if propagation is not None and propagation not in PROPAGATIONS:
        raise DeclarationError(
            f"propagation={propagation!r}", f"must be one of {', '.join(map(repr, PROPAGATIONS))}"
        )
    timeout = kwargs.get("timeout")
    fork = kwargs.get("fork")
    if fork is not None and not isinstance(fork, bool):
        raise DeclarationError(f"fork={fork!r}", "must be True or False")
    hermetic = kwargs.get("hermetic")
    if hermetic is not None and not isinstance(hermetic, bool):
        raise DeclarationError(f"hermetic={hermetic!r}", "must be True or False")
    timeout_seconds = None if timeout is None else parse_timeout(timeout, "timeout=")
    return Declaration(mounts, propagation, timeout_seconds, fork, hermetic)


def parse_timeout(value: object, where: str) -> float:
    """Seconds, a positive number; from the marker, the command line or the ini file."""
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise DeclarationError(where, f"must be a positive number of seconds, not {value!r}")
    return seconds


def _paths(value: object, argument: str, expected: str) -> list[object]:
    """A list of paths; a single path is taken as a list of one."""
    if isinstance(value, (str, os.PathLike)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise DeclarationError(argument, f"must be {expected}, not {type(value).__name__}")


def _add(mounts: dict[str, Mount], mount: Mount) -> None:
    if mounts.get(mount.target, mount) != mount:
        raise DeclarationError(
            f"{mount.kind} target {mount.target!r}",
            "declared twice in one marker, differently",
        )
    mounts[mount.target] = mount


def merge(closest_first: Iterable[Declaration]) -> Declaration:
    """Merge the declarations of an item's markers; the closest one wins per target."""
    mounts: dict[str, Mount] = {}
    propagation = timeout = fork = hermetic = None
    for declaration in reversed(list(closest_first)):
        mounts.update(declaration.mounts)
        propagation = declaration.propagation or propagation
        timeout = declaration.timeout or timeout
        fork = fork if declaration.fork is None else declaration.fork
        hermetic = hermetic if declaration.hermetic is None else declaration.hermetic
    if fork is False and timeout is not None:
        raise DeclarationError(
            "fork=False",
            f"cannot be combined with timeout={timeout:g}: "
            "only a forked child can be stopped when it overruns",
        )
    return Declaration(mounts, propagation, timeout, fork, hermetic)


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


def source_path(value: object, argument: str, base: str) -> str:
    """A bind source: absolute, or relative to ``base``.

    Not looked up here: whether it exists, and where its symlinks lead, is
    found out just before the test runs (``_plan.resolve``).
    """
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise DeclarationError(
            f"{argument} {value!r}", f"must be a str or os.PathLike, not {type(value).__name__}"
        )
    path = os.fspath(value)
    if not isinstance(path, str) or not path or "\0" in path:
        raise DeclarationError(f"{argument} {value!r}", "must be a non-empty text path")
    return os.path.normpath(os.path.join(base, path))


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
