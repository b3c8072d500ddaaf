"""The ctypes choke point for the Linux calls Python's ``os`` module lacks.

Every wrapper turns libc's ``-1`` into ``OSError(errno, message, path)``, so
callers get ``PermissionError``, ``FileNotFoundError`` and friends for free.
Standard library only: the forked child imports nothing else after ``unshare``.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import os
import signal
from collections.abc import Iterator

from . import _mountinfo


class CloneFlag(enum.IntFlag):
    FS = 0x00000200
    NEWNS = 0x00020000
    NEWUSER = 0x10000000


class MountFlag(enum.IntFlag):
    NONE = 0
    RDONLY = 1
    NOSUID = 2
    NODEV = 4
    NOEXEC = 8
    REMOUNT = 32
    MOVE = 8192
    NOATIME = 1024
    NODIRATIME = 2048
    BIND = 4096
    REC = 16384
    PRIVATE = 1 << 18
    SLAVE = 1 << 19
    SHARED = 1 << 20
    RELATIME = 1 << 21
    STRICTATIME = 1 << 24


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_DAC_OVERRIDE = 1
CAP_SYS_CHROOT = 18
CAP_SYS_ADMIN = 21
_CAPABILITY_VERSION_3 = 0x20080522
MNT_DETACH = 2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
SYS_MOUNT_SETATTR = 442  # the same on every architecture since Linux 5.12
SYS_OPEN_TREE = 428  # the same on every architecture since Linux 5.2
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000

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

_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns.restype = ctypes.c_int

_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_umount2.restype = ctypes.c_int

_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_capset_call = _libc.capset
_capset_call.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_capset_call.restype = ctypes.c_int

_capget = _libc.capget
_capget.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_capget.restype = ctypes.c_int

_fflush = _libc.fflush
_fflush.argtypes = [ctypes.c_void_p]
_fflush.restype = ctypes.c_int


def _check(result: int, call: str, path: str | None = None) -> None:
    if result == -1:
        _fail(call, path)


def _fail(call: str, path: str | None = None) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{call}: {os.strerror(err)}", path)


def _encode(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _names(flags: enum.IntFlag) -> str:
    """For error messages only: spelling the flags out costs more than the call."""
    return "|".join(str(member.name) for member in type(flags) if member & flags) or "0"


def unshare(flags: CloneFlag) -> None:
    if _unshare(int(flags)) == -1:
        _fail(f"unshare({_names(flags)})")


def setns(fd: int, flags: CloneFlag) -> None:
    if _setns(fd, int(flags)) == -1:
        _fail(f"setns({_names(flags)})")


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: MountFlag = MountFlag.NONE,
    data: str | None = None,
) -> None:
    result = _mount(_encode(source), _encode(target), _encode(fstype), int(flags), _encode(data))
    if result == -1:
        _fail(f"mount({fstype or source}, {_names(flags)})", target)


def mount_overlay(target: str, lower: str, upper: str, work: str) -> None:
    """Mount an overlay on ``target``: ``lower`` below, the writes in ``upper``.

    The kernel gives the overlay its mounter's rights, and it needs
    CAP_DAC_OVERRIDE: in a user namespace that is permitted, not in effect
    (``_namespace.keep_only_needed_capabilities``), so it is, meanwhile.
    """
    data = f"lowerdir={lower},upperdir={upper},workdir={work}"
    with capability_in_effect(CAP_DAC_OVERRIDE):
        mount("overlay", target, "overlay", MountFlag.NONE, data)


def clone_mount(fd: int) -> int:
    """A descriptor of a private copy of the mount ``fd`` is on, without what is mounted on
    it: a path looked up from there stays on that file system, as an overlay's lower layer."""
    result = _syscall(
        ctypes.c_long(SYS_OPEN_TREE),
        ctypes.c_int(fd),
        ctypes.c_char_p(b""),
        ctypes.c_uint(OPEN_TREE_CLONE | AT_EMPTY_PATH | os.O_CLOEXEC),
    )
    _check(result, "open_tree(OPEN_TREE_CLONE)")
    return int(result)


def umount(target: str, flags: int = 0) -> None:
    _check(_umount2(os.fsencode(target), flags), "umount2", target)


def set_readonly(target: str, readonly: bool = True, recursive: bool = True) -> None:
    """Set (or clear) read-only on the mount at ``target`` and (``recursive``) every one
    below it, changing nothing else.

    ``mount_setattr`` leaves the other flags alone, so the flags a user
    namespace locks (nosuid, nodev, atime) need no care. Before Linux 5.12,
    each mount is remounted with the flags it has.
    """
    attr = _MountAttr(**{"attr_set" if readonly else "attr_clr": MOUNT_ATTR_RDONLY})
    result = _syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(target)),
        ctypes.c_uint(AT_RECURSIVE if recursive else 0),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if result == -1 and ctypes.get_errno() == errno.ENOSYS:
        _remount_one_by_one(target, readonly, recursive)
        return
    change = "MOUNT_ATTR_RDONLY" if readonly else "clear MOUNT_ATTR_RDONLY"
    _check(result, f"mount_setattr({change}{', AT_RECURSIVE' * recursive})", target)


_STATVFS_TO_MOUNT = {
    os.ST_NOSUID: MountFlag.NOSUID,
    os.ST_NODEV: MountFlag.NODEV,
    os.ST_NOEXEC: MountFlag.NOEXEC,
    os.ST_NOATIME: MountFlag.NOATIME,
    os.ST_NODIRATIME: MountFlag.NODIRATIME,
    os.ST_RELATIME: MountFlag.RELATIME,
}


def _remount_one_by_one(target: str, readonly: bool, recursive: bool) -> None:
    prefix = target.rstrip("/") + "/"
    points = [entry.mountpoint for entry in _mountinfo.read()] if recursive else [target]
    for point in dict.fromkeys(p for p in points if p == target or p.startswith(prefix)):
        kept = os.statvfs(point).f_flag
        flags = MountFlag.REMOUNT | MountFlag.BIND | (MountFlag.RDONLY if readonly else 0)
        for statvfs_flag, mount_flag in _STATVFS_TO_MOUNT.items():
            if kept & statvfs_flag:
                flags |= mount_flag
        mount(None, point, None, flags)


def set_parent_death_signal(sig: signal.Signals) -> None:
    _check(_prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def become_subreaper(on: bool = True) -> None:
    """Adopt the orphans of every descendant, so none escapes by double-forking."""
    _check(_prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """A subreaper meanwhile only: otherwise a daemon that a test not isolated
    double-forks would be adopted here, not by init, unlike without the plugin."""
    become_subreaper()
    try:
        yield
    finally:
        become_subreaper(False)


def write_without_sigpipe(fd: int, data: bytes) -> None:
    """Write to a pipe whose reader may be gone (``BrokenPipeError``) without dying of SIGPIPE,
    which kills where a test reset it to its default in pytest's process."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        os.write(fd, data)
    finally:
        if signal.SIGPIPE not in blocked:
            signal.sigtimedwait({signal.SIGPIPE}, 0)  # the one this write raised, if it did
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def flush_c_stdio() -> None:
    """Flush C-level stdio buffers, so a fork does not write them twice."""
    _fflush(None)


def mount_namespace_id(pid: int | str = "thread-self") -> int:
    """The namespace of a process, or by default of the calling thread (they may differ)."""
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


def has_cap_sys_admin() -> bool:
    """Whether this process may mount in its own user namespace (root, usually)."""
    return bool(_capabilities(b"CapEff:") >> CAP_SYS_ADMIN & 1)


def ambient_capabilities() -> tuple[int, ...]:
    """The capabilities this process gives the programs it executes, in order."""
    mask = _capabilities(b"CapAmb:")
    return tuple(capability for capability in range(64) if mask >> capability & 1)


def _capabilities(field: bytes) -> int:
    with open("/proc/self/status", "rb") as status:  # bytes: the process's name may be any
        for line in status:
            if line.startswith(field):
                return int(line.split()[1], 16)
    return 0


def keep_only_capabilities(
    effective: tuple[int, ...], permitted: tuple[int, ...], ambient: bool
) -> None:
    """Drop every capability but ``permitted``, of which only ``effective`` are in effect;
    with ``ambient``, programs this process executes keep ``permitted`` (all in effect),
    else they get none.

    The calling thread's, and so every thread's it starts after. Capabilities below 32 only,
    which is all this needs.
    """
    mask = _mask(permitted)
    _capset(_CapData(_mask(effective), mask, mask))
    _check(_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT)")
    for capability in permitted if ambient else ():
        _check(
            _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, capability, 0, 0), "prctl(PR_CAP_AMBIENT)"
        )


@contextlib.contextmanager
def capability_in_effect(capability: int) -> Iterator[None]:
    """Meanwhile, in this thread, ``capability`` is in effect if it is permitted.

    Where it is not permitted (or already in effect) nothing changes: a call
    that needs it fails as it would have.
    """
    now = (_CapData * 2)()
    _check(_capget(ctypes.byref(_CapHeader(_CAPABILITY_VERSION_3, 0)), now), "capget")
    low, high = now
    bit = 1 << capability
    if low.effective & bit or not low.permitted & bit:
        yield
        return
    _capset(_CapData(low.effective | bit, low.permitted, low.inheritable), high)
    try:
        yield
    finally:
        _capset(low, high)


def _mask(capabilities: tuple[int, ...]) -> int:
    mask = 0
    for capability in capabilities:
        assert capability < 32
        mask |= 1 << capability
    return mask


def _capset(low: _CapData, high: _CapData | None = None) -> None:
    data = (_CapData * 2)(low, high or _CapData(0, 0, 0))
    _check(_capset_call(ctypes.byref(_CapHeader(_CAPABILITY_VERSION_3, 0)), data), "capset")


def maps_only_own_ids() -> bool:
    """Whether this process is in a user namespace that maps its own uid and gid and no other.

    So it is in a session's user namespace (or ``unshare --map-current-user``'s):
    other ids show as the overflow id, and mounts from outside are locked.
    """
    for path, own in (("/proc/self/uid_map", os.getuid()), ("/proc/self/gid_map", os.getgid())):
        with open(path) as map_file:
            lines = map_file.read().split("\n")
        ranges = [line.split() for line in lines if line.strip()]
        if len(ranges) != 1 or (ranges[0][0], ranges[0][2]) != (str(own), "1"):
            return False
    return True


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
