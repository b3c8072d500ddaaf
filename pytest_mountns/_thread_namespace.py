"""In-process isolation: the calling thread enters a private mount namespace and comes back.

A mount namespace belongs to a thread, not to a process: ``unshare`` moves
only the caller, and ``setns`` on a held descriptor moves it back. No fork,
so no page tables to copy: the switch costs a few syscalls.

``unshare(CLONE_NEWNS)`` implies ``CLONE_FS``: from then on the thread has
its own working directory, root and umask, and a ``chdir`` no longer reaches
the threads that existed before (nor theirs it). The way back restores all three.

Dropping a namespace unmounts everything in it and waits for the kernel's
RCU grace period, which costs more than the rest of the switch. So the thread
holds the namespace it leaves, and a releasing thread drops it meanwhile.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass

from . import _linux
from ._linux import CloneFlag, MountFlag


class NoWayBack(RuntimeError):
    """The thread could not return to pytest's namespace: isolation cannot go on safely."""


@dataclass(frozen=True)
class Origin:
    """Where the thread was, held open so that it can return to exactly there."""

    namespace: int
    root: int
    cwd: int
    umask: int
    entered: int = -1
    """The namespace entered, held so that leaving it does not wait for its teardown."""


def enter(propagation: str = "private") -> Origin:
    """Move the calling thread into a fresh mount namespace cut off from its old one.

    On failure the thread is back where it was before this raises.
    """
    origin = _hold()
    try:
        _linux.unshare(CloneFlag.NEWNS)
        kind = MountFlag.SLAVE if propagation == "slave" else MountFlag.PRIVATE
        _linux.mount(None, "/", None, MountFlag.REC | kind)
        entered = os.open(_OWN_NAMESPACE, os.O_RDONLY | os.O_CLOEXEC)
        return Origin(origin.namespace, origin.root, origin.cwd, origin.umask, entered)
    except BaseException:
        leave(origin)
        raise


def leave(origin: Origin) -> None:
    """Return the thread to the namespace, root and working directory of ``origin``.

    A Ctrl-C on the way does not strand the thread: each step can be done
    twice, so the way back is finished first and the interrupt raised after.
    """
    interrupted = False
    try:
        while True:
            try:
                _go_back(origin)
                break
            except KeyboardInterrupt:
                interrupted = True
    except OSError as error:
        raise NoWayBack(
            f"this thread could not return to pytest's mount namespace: {error}"
        ) from error
    finally:
        for fd in (origin.namespace, origin.root, origin.cwd):
            os.close(fd)
        if origin.entered >= 0:
            _releaser.release(origin.entered)
    if interrupted:
        raise KeyboardInterrupt


def _go_back(origin: Origin) -> None:
    """``setns`` refuses a thread that shares its file-system context, and a thread
    the test started shares it (and stays behind, in the test's namespace): so the
    context is made the thread's own again first."""
    _linux.unshare(CloneFlag.FS)
    _linux.setns(origin.namespace, CloneFlag.NEWNS)
    # setns puts root and cwd at the namespace's root; pytest's root may be a chroot
    # (a bind of the same directory, which no stat tells apart), so always restore it.
    os.fchdir(origin.root)
    os.chroot(".")
    os.fchdir(origin.cwd)
    os.umask(origin.umask)  # the rest of the file-system context a test may change


def probe() -> str | None:
    """Why a thread cannot go in and come back here, or None: tried in a throwaway thread.

    The throwaway thread ends either way, so a failed return strands nothing.
    """
    failures: list[str] = []

    def attempt() -> None:
        try:
            leave(enter())
        except (OSError, NoWayBack) as error:
            failures.append(str(error))

    thread = threading.Thread(target=attempt, name="pytest-mountns-probe")
    thread.start()
    thread.join()
    settle()
    return failures[0] if failures else None


def settle() -> None:
    """Wait until every namespace left is gone, and end the releasing thread.

    Before a fork (a forked child should find no other thread) and at the end.
    """
    _releaser.stop()


class _Releaser:
    """A thread that closes the descriptors holding left namespaces, started when needed.

    One at a time, at once: a namespace held longer would hold its tmpfs'
    content in memory too.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def release(self, fd: int) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._close_until_stopped, name="pytest-mountns-release", daemon=True
            )
            self._thread.start()
        self._queue.put(fd)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def forget(self) -> None:
        """In a forked child, which has no such thread (nor a usable lock of its queue)."""
        self._queue = queue.SimpleQueue()
        self._thread = None

    def _close_until_stopped(self) -> None:
        while (fd := self._queue.get()) is not None:
            os.close(fd)


_releaser = _Releaser()
os.register_at_fork(after_in_child=_releaser.forget)
_OWN_NAMESPACE = "/proc/thread-self/ns/mnt"


def _hold() -> Origin:
    flags = os.O_CLOEXEC
    namespace = os.open(_OWN_NAMESPACE, os.O_RDONLY | flags)
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | flags)
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | flags)
    umask = os.umask(0o022)
    os.umask(umask)
    return Origin(namespace, root, cwd, umask)
