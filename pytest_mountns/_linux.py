"""The ctypes choke point for the Linux calls Python's ``os`` module lacks.

Every wrapper turns libc's ``-1`` into ``OSError(errno, message, path)``, so
callers get ``PermissionError``, ``FileNotFoundError`` and friends for free.
Standard library only: the forked child imports nothing else after ``unshare``.
"""

from __future__ import annotations

import ctypes
import enum
import os
import signal


class CloneFlag(enum.IntFlag):
    NEWNS = 0x00020000
    NEWUSER = 0x10000000


class MountFlag(enum.IntFlag):
    NONE = 0
    RDONLY = 1
    NOSUID = 2
    NODEV = 4
    NOEXEC = 8
    REMOUNT = 32
    BIND = 4096
    REC = 16384
    PRIVATE = 1 << 18
    SLAVE = 1 << 19
    SHARED = 1 << 20


PR_SET_PDEATHSIG = 1
CAP_SYS_ADMIN = 21

_libc = ctypes.CDLL(None, use_errno=True)

_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_unshare.restype = ctypes.c_int

_mount = _libc.mount
_mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_mount.restype = ctypes.c_int

_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int

_fflush = _libc.fflush
_fflush.argtypes = [ctypes.c_void_p]
_fflush.restype = ctypes.c_int


def _check(result: int, call: str, path: str | None = None) -> None:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}: {os.strerror(err)}", path)


def _encode(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _names(flags: enum.IntFlag) -> str:
    return "|".join(str(member.name) for member in type(flags) if member & flags) or "0"


def unshare(flags: CloneFlag) -> None:
    _check(_unshare(int(flags)), f"unshare({_names(flags)})")


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: MountFlag = MountFlag.NONE,
    data: str | None = None,
) -> None:
    result = _mount(_encode(source), _encode(target), _encode(fstype), int(flags), _encode(data))
    _check(result, f"mount({fstype or source}, {_names(flags)})", target)


def set_parent_death_signal(sig: signal.Signals) -> None:
    _check(_prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def flush_c_stdio() -> None:
    """Flush C-level stdio buffers, so a fork does not write them twice."""
    _fflush(None)


def mount_namespace_id(pid: int | str = "self") -> int:
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


def has_cap_sys_admin() -> bool:
    """Whether this process may mount in its own user namespace (root, usually)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    return False


def map_own_ids(uid: int, gid: int) -> None:
    """Map, in a fresh user namespace, the caller's own uid and gid onto themselves.

    ``setgroups`` must be denied before an unprivileged process may write ``gid_map``.
    """
    for path, line in (
        ("/proc/self/setgroups", "deny"),
        ("/proc/self/uid_map", f"{uid} {uid} 1"),
        ("/proc/self/gid_map", f"{gid} {gid} 1"),
    ):
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, line.encode())
        except OSError as error:
            raise OSError(error.errno, f"write {line!r}: {error.strerror}", path) from None
        finally:
            os.close(fd)
