"""Reading the calling thread's ``mountinfo`` into typed entries. Standard library only.

The thread's, not the process's: in-process isolation moves one thread only.
"""

from __future__ import annotations

import collections
import os
import re
import select
from dataclasses import dataclass

MOUNTINFO = "/proc/thread-self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


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


def read(path: str = MOUNTINFO) -> list[MountEntry]:
    with open(path) as table:
        return [_parse(line) for line in table if line.strip()]


def _parse(line: str) -> MountEntry:
    fields = line.split()
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
    )


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def root_propagation() -> str:
    """The propagation of ``/`` as ``findmnt -o PROPAGATION /`` would say it."""
    try:
        entries = read()
    except OSError:
        return "unknown"
    roots = [entry for entry in entries if entry.mountpoint == "/"]
    return roots[-1].propagation if roots else "unknown"


def snapshot() -> str:
    """The mount table as text, to compare whole entries: mount IDs alone are reused."""
    with open(MOUNTINFO) as table:
        return table.read()


class Watch:
    """Whether this namespace's mount table changed, for the price of a ``poll``.

    The kernel flags an open ``mountinfo`` with POLLPRI when a mount or
    unmount happens in its namespace (not in a child's), so the table is only
    read again, and compared whole, when something did change.
    """

    def __init__(self) -> None:
        self._fd = os.open(MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLPRI)
        self._changed()
        self._table = snapshot()

    def start(self) -> None:
        """Take the table as it is now as the one to compare with."""
        if self._changed():
            self._table = snapshot()

    def changes(self) -> str | None:
        """What appeared in or vanished from the table since ``start``, or None."""
        if not self._changed():
            return None
        before, self._table = self._table, snapshot()
        old = collections.Counter(before.splitlines())
        new = collections.Counter(self._table.splitlines())
        lines = [f"  + {_brief(line)}" for line in (new - old).elements()]
        lines += [f"  - {_brief(line)}" for line in (old - new).elements()]
        return "\n".join(lines) or None  # None: the same entries, in another order

    def _changed(self) -> bool:
        return bool(self._poll.poll(0))


def _brief(line: str) -> str:
    entry = _parse(line)
    return f"{entry.mountpoint} ({entry.fstype} from {entry.source}, {entry.propagation})"
