"""Reading the calling thread's ``mountinfo`` into typed entries. Standard library only.

The thread's, not the process's: in-process isolation moves one thread only.
A mount point is bytes, in any encoding (a USB stick's Latin-1 name): the
table is read as bytes, and paths decoded as ``os.fsdecode`` does, so that
they name the same files; ``printable`` is for messages.
"""

from __future__ import annotations

import collections
import os
import re
import select
from dataclasses import dataclass

MOUNTINFO = "/proc/thread-self/mountinfo"
_ESCAPE = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One mount of a namespace, as ``findmnt`` would show it."""

    mountpoint: str
    fstype: str
    source: str
    options: tuple[str, ...]
    """Per-mount options (``ro``, ``nosuid``...) then the file system's own (``size=...``)."""
    propagation: str
    """``shared``, ``slave``, ``private`` or ``unbindable``."""
    mount_id: int = -1
    """The kernel's id of the mount, as ``/proc/PID/fdinfo`` gives it for a descriptor."""
    parent_id: int = -1
    """The id of the mount this one is mounted on."""


def read(path: str = MOUNTINFO) -> list[MountEntry]:
    with open(path, "rb") as table:
        return [_parse(line) for line in table.read().splitlines() if line.strip()]


def printable(path: str) -> str:
    """A path as a terminal can show it: undecodable bytes as ``\\xe9``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _parse(line: bytes) -> MountEntry:
    fields = os.fsdecode(line).split(" ")  # one space apart; a space in a field is escaped
    separator = fields.index("-")
    optional = [field.split(":")[0] for field in fields[6:separator]]
    if "shared" in optional:
        propagation = "shared"
    elif "master" in optional:
        propagation = "slave"
    elif "unbindable" in optional:
        propagation = "unbindable"
    else:
        propagation = "private"
    options = fields[5].split(",")
    options += [o for o in fields[separator + 3].split(",") if o not in options]
    return MountEntry(
        mountpoint=_unescape(fields[4]),
        fstype=fields[separator + 1],
        source=_unescape(fields[separator + 2]),
        options=tuple(options),
        propagation=propagation,
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
    )


def _unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash as octal escapes."""
    if "\\" not in field:
        return field
    raw = _ESCAPE.sub(lambda match: bytes([int(match.group(1), 8)]), os.fsencode(field))
    return os.fsdecode(raw)


def root_propagation() -> str:
    """The propagation of ``/`` as ``findmnt -o PROPAGATION /`` would say it."""
    try:
        entries = read()
    except OSError:
        return "unknown"
    roots = [entry for entry in entries if entry.mountpoint == "/"]
    return roots[-1].propagation if roots else "unknown"


def snapshot() -> bytes:
    """The mount table, to compare whole entries: mount IDs alone are reused."""
    with open(MOUNTINFO, "rb") as table:
        return table.read()


class Watch:
    """Whether this namespace's mount table changed, for the price of a ``poll``.

    The kernel flags an open ``mountinfo`` with POLLPRI when a mount or
    unmount happens in its namespace (not in a child's), so the table is only
    read again, and compared whole, when something did change.
    """

    def __init__(self) -> None:
        self._open()
        self._table = snapshot()

    def _open(self) -> None:
        self._fd = os.open(MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC)
        info = os.fstat(self._fd)
        self._identity = (info.st_dev, info.st_ino)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLPRI)
        self._poll.poll(0)

    def start(self) -> None:
        """Take the table as it is now as the one to compare with."""
        if self.touched():
            self._table = snapshot()

    def changes(self) -> str | None:
        """What appeared in or vanished from the table since ``start``, or None."""
        if not self.touched():
            return None
        before, self._table = self._table, snapshot()
        old = collections.Counter(before.splitlines())
        new = collections.Counter(self._table.splitlines())
        lines = [f"  + {_brief(line)}" for line in (new - old).elements()]
        lines += [f"  - {_brief(line)}" for line in (old - new).elements()]
        return "\n".join(lines) or None  # None: the same entries, in another order

    def touched(self) -> bool:
        """Whether a mount or unmount happened here since the last look (polled); where a
        test closed the descriptor (in-process), it is opened again, and the answer is yes."""
        try:
            info = os.fstat(self._fd)
            ours = (info.st_dev, info.st_ino) == self._identity
        except OSError:
            ours = False
        if not ours:
            self._open()
            return True
        return bool(self._poll.poll(0))


def _brief(line: bytes) -> str:
    entry = _parse(line)
    where, source = printable(entry.mountpoint), printable(entry.source)
    return f"{where} ({entry.fstype} from {source}, {entry.propagation})"
