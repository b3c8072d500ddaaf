"""Find out once per session whether this machine lets a test have its own namespace.

The probe runs the child's whole sequence (unshare, private ``/``, a tmpfs
mount) in a throwaway child, so a test never learns it the hard way.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from dataclasses import dataclass

from . import _linux, _namespace
from ._spec import TmpfsOptions


@dataclass(frozen=True)
class Availability:
    available: bool
    how: str
    """How the right to mount is obtained, e.g. "root"; or why it is not."""
    namespace: int = 0
    """The inode of pytest's own mount namespace, to prove a child left it."""


_FIXES = {
    errno.EPERM: "run pytest as root, or with CAP_SYS_ADMIN",
    errno.EACCES: "a security policy denies mounting; allow it or run outside that container",
    errno.ENOSPC: "the limit on mount namespaces is reached; raise user.max_mnt_namespaces",
    errno.EINVAL: "the kernel refused the call; check it supports mount namespaces",
}


def probe() -> Availability:
    if not sys.platform.startswith("linux"):
        return Availability(False, f"mount namespaces need Linux, this is {sys.platform}")
    try:
        namespace = _linux.mount_namespace_id()
    except OSError as error:
        return Availability(False, f"/proc is not usable ({error.strerror}); mount /proc")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _probe_child(write_fd, namespace)
    os.close(write_fd)
    with open(read_fd, "rb") as answer:
        message = answer.read().decode(errors="replace")
    os.waitpid(pid, 0)
    if message == "ok":
        how = "root" if os.geteuid() == 0 else f"uid {os.geteuid()} with CAP_SYS_ADMIN"
        return Availability(True, how, namespace)
    return Availability(False, message or "the probe process died without an answer")


def _probe_child(fd: int, namespace: int) -> None:
    answer = "ok"
    try:
        _linux.set_parent_death_signal(signal.SIGKILL)
        _namespace.enter_private_namespace(namespace)
        _namespace.mount_tmpfs("/", TmpfsOptions(size="4k"))
    except OSError as error:
        fix = _FIXES.get(error.errno or 0, "")
        name = errno.errorcode.get(error.errno or 0, str(error.errno))
        answer = f"{error.strerror} ({name}){'; ' + fix if fix else ''}"
    except BaseException as error:
        answer = f"{type(error).__name__}: {error}"
    finally:
        os.write(fd, answer.encode())
        os._exit(0)


def root_propagation() -> str:
    """The propagation of ``/`` as ``findmnt -o PROPAGATION /`` would say it."""
    try:
        with open("/proc/self/mountinfo") as table:
            lines = [line.split() for line in table]
    except OSError:
        return "unknown"
    for fields in reversed(lines):
        if len(fields) > 4 and fields[4] == "/":
            optional = fields[6 : fields.index("-")]
            kinds = [field.split(":")[0] for field in optional]
            if "shared" in kinds:
                return "shared"
            return "slave" if "master" in kinds else "private"
    return "unknown"
