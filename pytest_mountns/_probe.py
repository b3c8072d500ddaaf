"""Find out once per session how a test can get its own mount namespace, or exactly why not.

The probe runs the child's whole sequence (unshare, id maps, private ``/``,
a tmpfs mount) in a throwaway child, so a test never learns it the hard
way; where it fails, the errno and the ``/proc/sys`` knobs name the cause
and the fix.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import _linux, _namespace, _processes, _thread_namespace
from ._spec import TmpfsOptions

USERNS_MODES = ("auto", "always", "never", "session")
KNOBS = (
    "kernel.unprivileged_userns_clone",
    "kernel.apparmor_restrict_unprivileged_userns",
    "user.max_user_namespaces",
    "user.max_mnt_namespaces",
)
ID_MAP_FILES = ("/proc/self/setgroups", "/proc/self/uid_map", "/proc/self/gid_map")


@dataclass(frozen=True)
class Availability:
    available: bool
    how: str
    """How the right to mount is obtained, or why there is none and what to change."""
    user_namespace: bool = False
    """Each test gets a user namespace of its own (a child enters it)."""
    only_own_ids: bool = False
    """The tests' namespaces are in a user namespace, their own or the session's: only the
    caller's uid and gid exist there, and the mounts from outside are locked."""
    namespace: int = 0
    """The inode of pytest's own mount namespace, to prove a child left it."""


@dataclass(frozen=True)
class Failure:
    """The call of the child's sequence that failed, as the choke point reported it."""

    errno: int
    message: str
    path: str | None = None


def probe(mode: str = "auto") -> Availability:
    """How isolated tests run here: root's plain namespace, a user namespace, or not at all.

    ``auto`` tries a plain mount namespace when the process holds
    CAP_SYS_ADMIN and a user namespace otherwise (or if the plain one is
    refused); ``always`` uses a user namespace; ``never`` only the plain one.
    ``session`` is ``auto`` once the session's user namespace is entered (or
    could not be): inside it the process holds CAP_SYS_ADMIN.
    """
    if not sys.platform.startswith("linux"):
        return Availability(False, f"mount namespaces need Linux; this is {sys.platform}")
    try:
        namespace = _linux.mount_namespace_id()
        privileged = _linux.has_cap_sys_admin()
        in_session = privileged and _linux.maps_only_own_ids()
    except OSError as error:
        return Availability(False, f"/proc is not usable ({error.strerror}); mount /proc")
    ways = {
        "auto": [False, True] if privileged else [True],
        "always": [True],
        "never": [False],
    }[mode if mode != "session" else "auto"]
    failure = Failure(0, "")
    for user_namespace in ways:
        failure_or_none = try_namespace(namespace, user_namespace)
        if failure_or_none is None:
            how = describe(user_namespace, in_session)
            only_own_ids = user_namespace or in_session
            return Availability(True, how, user_namespace, only_own_ids, namespace)
        failure = failure_or_none
    return Availability(False, diagnose(failure, ways[-1], privileged, mode, read_knobs()))


def why_not_in_process(availability: Availability, session: str | None = None) -> str | None:
    """Why pytest's own thread cannot isolate tests here (``--mountns-mode=inprocess``), or None.

    ``session``: why the session's user namespace, which was wanted, could not be entered.
    """
    if not availability.available:
        return availability.how
    if availability.user_namespace and not _linux.has_cap_sys_admin():
        needs = (
            "it needs CAP_SYS_ADMIN; isolation here takes a user namespace per test, "
            "which a thread cannot leave"
        )
        if session is not None:
            return f"{needs}, and one for the whole session could not be entered: {session}"
        return f"{needs} (--mountns-userns=session enters one for the whole session)"
    if availability.user_namespace:
        return "--mountns-userns=always takes a user namespace, which a thread cannot leave"
    return _thread_namespace.probe()


def describe(user_namespace: bool, in_session: bool = False) -> str:
    if user_namespace:
        return f"user namespace as uid {os.getuid()}, gid {os.getgid()}"
    if in_session:
        return (
            f"one user namespace for the session, as uid {os.getuid()}, gid {os.getgid()}: "
            "a plain mount namespace per test"
        )
    return "root: a plain mount namespace per test"


def try_namespace(namespace: int, user_namespace: bool) -> Failure | None:
    """Run the child's sequence in a throwaway child; None if it all worked."""

    def sequence() -> None:
        _namespace.enter_private_namespace(namespace, user_namespace)
        _namespace.mount_tmpfs("/", TmpfsOptions(size="4k"))

    return in_throwaway_child(sequence)


def in_throwaway_child(sequence: Callable[[], None]) -> Failure | None:
    """Run ``sequence`` in a child that ends after it, whatever it changed; None if it worked."""
    read_fd, write_fd = os.pipe()
    with _processes.waitable_children():
        pid = _processes.fork()
        if pid == 0:
            os.close(read_fd)
            _probe_child(write_fd, sequence)
        os.close(write_fd)
        with open(read_fd, "rb") as answer:
            fields = answer.read().decode(errors="replace").split("\0")
        _processes.wait_for(pid)
    if fields == ["ok"]:
        return None
    if len(fields) != 3:
        return Failure(0, "the probe process died without an answer")
    number, message, path = fields
    return Failure(int(number), message, path or None)


def _probe_child(fd: int, sequence: Callable[[], None]) -> None:
    answer = "ok"
    try:
        _linux.set_parent_death_signal(signal.SIGKILL)
        sequence()
    except OSError as error:
        answer = f"{error.errno or 0}\0{error.strerror}\0{error.filename or ''}"
    except BaseException as error:
        answer = f"0\0{type(error).__name__}: {error}\0"
    finally:
        os.write(fd, answer.encode())
        os._exit(0)


def read_knobs() -> dict[str, str | None]:
    """The sysctls that decide who may create namespaces; None where absent."""
    knobs: dict[str, str | None] = {}
    for knob in KNOBS:
        try:
            with open("/proc/sys/" + knob.replace(".", "/")) as value:
                knobs[knob] = value.read().strip()
        except OSError:
            knobs[knob] = None
    return knobs


def diagnose(
    failure: Failure,
    user_namespace: bool,
    privileged: bool,
    mode: str,
    knobs: dict[str, str | None],
) -> str:
    """Name the failed call and errno, the cause, and what to change."""
    name = errno.errorcode.get(failure.errno, str(failure.errno))
    where = f" on {failure.path}" if failure.path else ""
    cause = _cause(failure, user_namespace, privileged, mode, knobs)
    return f"{failure.message}{where} ({name}); {cause}"


_POLICY = (
    "a seccomp or container policy forbids it (Docker's default profile does): run the "
    "container with --security-opt seccomp=unconfined, or as root with --cap-add SYS_ADMIN"
)
_APPARMOR_USERNS = (
    "Ubuntu's AppArmor restricts unprivileged user namespaces "
    "(kernel.apparmor_restrict_unprivileged_userns=1): run "
    "'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0', or run pytest as root"
)


def _cause(
    failure: Failure,
    user_namespace: bool,
    privileged: bool,
    mode: str,
    knobs: dict[str, str | None],
) -> str:
    code, message = failure.errno, failure.message
    apparmor = knobs.get("kernel.apparmor_restrict_unprivileged_userns") == "1"
    if code == errno.EINVAL and message.startswith("unshare"):
        if not os.path.exists("/proc/self/ns/user"):
            return "this kernel has no namespace support (CONFIG_USER_NS, CONFIG_NAMESPACES)"
        return (
            "the calling process is multithreaded, and unshare needs a single-threaded "
            "caller: call it before starting threads"
        )
    if code == errno.ENOSPC:
        kind = "user" if "NEWUSER" in message else "mnt"
        knob = f"user.max_{kind}_namespaces"
        shown = knobs.get(knob)
        return (
            f"the limit on {kind} namespaces is reached ({knob}={shown} here"
            f"{'; an enclosing user namespace sets it lower' if shown not in ('0', None) else ''})"
            f": raise it, e.g. 'sysctl -w {knob}=15000'"
        )
    if message.startswith("unshare(NEWUSER)") and code == errno.EPERM:
        if knobs.get("kernel.unprivileged_userns_clone") == "0":
            return (
                "user namespaces are disabled for unprivileged users "
                "(kernel.unprivileged_userns_clone=0): run "
                "'sysctl -w kernel.unprivileged_userns_clone=1', or run pytest as root"
            )
        return _POLICY
    if failure.path in ID_MAP_FILES:
        if apparmor:
            return _APPARMOR_USERNS
        if failure.path == "/proc/self/uid_map" and os.geteuid() == 0:
            return (
                "mapping uid 0 needs CAP_SETFCAP (Linux 5.12+), which this root process "
                "lacks: give it back CAP_SYS_ADMIN (or CAP_SETFCAP), or run pytest as a "
                "normal user"
            )
        return "the kernel refused the new user namespace's id maps (an LSM or container policy)"
    if message.startswith("unshare(NEWNS)") and code == errno.EPERM:
        if not user_namespace and not privileged:
            rule = (
                "and --mountns-userns=never rules out a user namespace" if mode == "never" else ""
            )
            return (
                f"a plain mount namespace needs root (CAP_SYS_ADMIN) {rule}".rstrip()
                + ": run pytest as root, or with --mountns-userns=auto"
            )
        return _APPARMOR_USERNS if user_namespace and apparmor else _POLICY
    if message.startswith("mount") and code == errno.EACCES:
        return (
            "an AppArmor or SELinux policy denies mount (Docker's docker-default profile "
            "does): run the container with --security-opt apparmor=unconfined"
        )
    if message.startswith("mount") and code == errno.EPERM:
        return _APPARMOR_USERNS if user_namespace and apparmor else _POLICY
    return "see 'python -m pytest_mountns' for what this machine allows"
