"""One user namespace for the whole session: in-process isolation without root.

A thread cannot leave a user namespace, so without CAP_SYS_ADMIN every test
needs a forked child with a user namespace of its own. Instead pytest's
process can enter one user namespace (its own uid and gid mapped, nothing
else) and one mount namespace at configure, while it is still
single-threaded. There it holds CAP_SYS_ADMIN: a thread can go into each
test's mount namespace and come back, as root's does, and a forked child
needs no user namespace of its own.

There is no way back: the process stays there until it exits. Only the
capabilities isolation needs are in effect there, as in a test's own user
namespace (``_namespace.keep_only_needed_capabilities``).
"""

from __future__ import annotations

import os
import sys
import threading

from . import _linux, _namespace, _probe, _thread_namespace
from ._linux import CloneFlag
from ._spec import TmpfsOptions


class Stranded(RuntimeError):
    """The process left its user namespace and could not finish setting up the new one."""


def wanted(userns: str, mode: str) -> bool:
    """Asked for, or what ``auto`` picks for in-process mode without CAP_SYS_ADMIN.

    Never for the default fork mode on its own: the session namespace
    changes what the whole run sees (ids, setuid, the host's later mounts).
    """
    chosen = userns == "session" or (userns == "auto" and mode == "inprocess")
    if not (chosen and sys.platform.startswith("linux")):
        return False
    try:
        return not _linux.has_cap_sys_admin()
    except OSError:
        return False  # no /proc: the probe says so, for every test


def start(for_workers: bool) -> str | None:
    """Enter the session's namespaces; why not, where the process cannot (it is then unchanged).

    The whole sequence is tried first in a throwaway child, so that the
    process itself only goes where it can arrive. ``for_workers``: the
    programs it executes (xdist's workers) keep the capabilities isolation needs.
    """
    threads = other_threads()
    if threads:
        return (
            f"pytest's process already runs {len(threads)} other thread(s) "
            f"({', '.join(threads)}) when the plugin configures, and only a single-threaded "
            "process may enter a user namespace: a conftest or a plugin started them early"
        )
    reason = why_not()
    if reason is not None:
        return reason
    try:
        _linux.unshare(CloneFlag.NEWUSER)
    except OSError as error:  # nothing changed
        return f"{error.strerror} (in pytest's process, after it worked in a throwaway child)"
    try:
        _enter_rest(os.getuid(), os.getgid(), for_workers)
    except OSError as error:
        raise Stranded(
            "mountns: pytest's process entered a user namespace for the session but could not "
            f"set it up ({error}); it cannot go back, so the run stops. Run with "
            "--mountns-userns=auto and the default fork mode."
        ) from error
    return None


def why_not() -> str | None:
    """Why the session's sequence fails here, tried in a throwaway child, or None."""
    failure = _probe.in_throwaway_child(_trial)
    if failure is None:
        return None
    if failure.errno == 0:
        return failure.message
    return _probe.diagnose(failure, True, False, "session", _probe.read_knobs())


def why_in_process_forks(userns: str = "auto") -> str | None:
    """What ``--mountns-mode=inprocess`` gives a pytest started here: None if its tests run
    in-process (in the session's namespace, where one is needed), else why they fork."""
    session = None
    if wanted(userns, "inprocess"):
        session = why_not()
        if session is None:
            return None
    return _probe.why_not_in_process(_probe.probe(userns), session)


def settle_inherited(for_workers: bool) -> None:
    """In a process that a session's process executed (xdist's worker), which got its
    capabilities all in effect: again only those isolation needs, and none for the
    programs it executes in turn, unless they are workers too.

    Recognised by the ambient capabilities the session gave, exactly; anything else
    (pytest run as root of a user namespace of its own) is left alone.
    """
    try:
        inherited = _linux.maps_only_own_ids() and set(_linux.ambient_capabilities()) == set(
            _namespace.CAPABILITIES_PERMITTED
        )
    except OSError:
        return  # no /proc: nothing to recognise it by, and no isolation either
    if inherited:
        _namespace.keep_only_needed_capabilities(for_workers)


def other_threads() -> list[str]:
    """The names of the process's threads besides the caller: Python's, else the kernel's."""
    own = threading.get_native_id()
    named = {thread.native_id: thread.name for thread in threading.enumerate()}
    names = []
    for tid in sorted(int(tid) for tid in os.listdir("/proc/self/task")):
        if tid == own:
            continue
        if tid in named:
            names.append(named[tid])
            continue
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                names.append(comm.read().strip())
        except OSError:
            continue  # it ended meanwhile
    return names


def _trial() -> None:
    """In the throwaway child: the session's sequence, then a test's way in and back."""
    uid, gid = os.getuid(), os.getgid()
    _linux.unshare(CloneFlag.NEWUSER)
    _enter_rest(uid, gid, for_workers=False)
    reason = _thread_namespace.probe()
    if reason is not None:
        raise RuntimeError(f"a thread could not come back to the session's namespace: {reason}")
    _namespace.enter_private_namespace(_linux.mount_namespace_id(), False)
    _namespace.mount_tmpfs("/", TmpfsOptions(size="4k"))


def _enter_rest(uid: int, gid: int, for_workers: bool) -> None:
    _linux.map_own_ids(uid, gid)
    _linux.unshare(CloneFlag.NEWNS)  # owned by the new user namespace: the way back is allowed
    _namespace.keep_only_needed_capabilities(for_workers)
