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

import contextlib
import dataclasses
import errno
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from . import _linux
from ._linux import CloneFlag, MountFlag


class NoWayBack(RuntimeError):
    """The thread could not return to pytest's namespace: isolation cannot go on safely."""


@dataclass(frozen=True)
class Origin:
    """Where the thread was, held open so that it can return to exactly there.

    A test may close descriptors it did not open, or change the process's
    credentials: each held descriptor is checked to be what it was before use
    (else found again through a thread still in pytest's namespace), and the
    uids, gids and groups are restored first, as ``setns`` needs CAP_SYS_ADMIN.
    """

    namespace: int
    root: int
    cwd: int
    umask: int
    cwd_path: str
    ids: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, ...]]
    identities: tuple[tuple[int, int], ...]
    """``(st_dev, st_ino)`` of each held descriptor: namespace, root, cwd (and entered)."""
    entered: int = -1
    """The namespace entered, held so that leaving it does not wait for its teardown."""

    def held(self) -> tuple[bool, ...]:
        """Which of namespace, root, cwd, entered are still the descriptors opened here."""
        fds = (self.namespace, self.root, self.cwd, self.entered)[: len(self.identities)]
        return tuple(_is(fd, identity) for fd, identity in zip(fds, self.identities, strict=True))


def enter(propagation: str = "private") -> Origin:
    """Move the calling thread into a fresh mount namespace cut off from its old one.

    On failure the thread is back where it was before this raises.
    """
    _releaser.start()  # a thread that stays in pytest's namespace, to find the way back by
    origin = _hold()
    try:
        _linux.unshare(CloneFlag.NEWNS)
        kind = MountFlag.SLAVE if propagation == "slave" else MountFlag.PRIVATE
        _linux.mount(None, "/", None, MountFlag.REC | kind)
        entered = os.open(_OWN_NAMESPACE, os.O_RDONLY | os.O_CLOEXEC)
        identities = (*origin.identities, _identity(entered))
        return dataclasses.replace(origin, identities=identities, entered=entered)
    except BaseException:
        leave(origin)
        raise


def leave(origin: Origin) -> None:
    """Return the thread to the namespace, root and working directory of ``origin``.

    A Ctrl-C on the way does not strand the thread: each step can be done
    twice, so the way back is finished first and the interrupt raised after.
    """
    interrupted = False
    held = origin.held()
    try:
        while True:
            try:
                _go_back(origin, held)
                break
            except KeyboardInterrupt:
                interrupted = True
    except OSError as error:
        raise NoWayBack(
            f"this thread could not return to pytest's mount namespace: {error}"
        ) from error
    finally:
        for fd, ours in zip((origin.namespace, origin.root, origin.cwd), held[:3], strict=True):
            if ours:
                os.close(fd)
        if held[3:] == (True,):
            _releaser.release(origin.entered)
    if interrupted:
        raise KeyboardInterrupt


def _go_back(origin: Origin, held: tuple[bool, ...]) -> None:
    """``setns`` refuses a thread that shares its file-system context, and a thread
    the test started shares it (and stays behind, in the test's namespace): so the
    context is made the thread's own again first."""
    _restore_ids(*origin.ids)
    _linux.unshare(CloneFlag.FS)
    with _found_again("ns/mnt", os.O_RDONLY) if not held[0] else _kept(origin.namespace) as ns:
        _linux.setns(ns, CloneFlag.NEWNS)
    # setns puts root and cwd at the namespace's root; pytest's root may be a chroot
    # (a bind of the same directory, which no stat tells apart), so always restore it.
    with _found_again("root", os.O_PATH) if not held[1] else _kept(origin.root) as root:
        os.fchdir(root)
    os.chroot(".")
    if held[2]:
        os.fchdir(origin.cwd)
    else:
        os.chdir(origin.cwd_path)
    os.umask(origin.umask)  # the rest of the file-system context a test may change


def _restore_ids(
    uids: tuple[int, int, int], gids: tuple[int, int, int], groups: tuple[int, ...]
) -> None:
    """Give the process back the credentials it had: a test may have dropped root."""
    if os.getresuid() != uids:
        os.setresuid(*uids)
    if os.getresgid() != gids:
        os.setresgid(*gids)
    if tuple(os.getgroups()) != groups:
        os.setgroups(groups)


@contextlib.contextmanager
def _kept(fd: int) -> Iterator[int]:
    yield fd


@contextlib.contextmanager
def _found_again(name: str, flags: int) -> Iterator[int]:
    """``/proc/self/task/<tid>/<name>`` of the releasing thread, which never left pytest's
    namespace nor its root: for a descriptor the test closed or replaced."""
    tid = _releaser.native_id()
    if tid is None:
        raise OSError(errno.EBADF, "the test closed what held pytest's namespace", name)
    fd = os.open(f"/proc/self/task/{tid}/{name}", flags | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _is(fd: int, identity: tuple[int, int]) -> bool:
    try:
        return fd >= 0 and _identity(fd) == identity
    except OSError:
        return False


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

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._close_until_stopped, name="pytest-mountns-release", daemon=True
            )
            self._thread.start()

    def native_id(self) -> int | None:
        return None if self._thread is None else self._thread.native_id

    def release(self, fd: int) -> None:
        self.start()
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
    ids = (os.getresuid(), os.getresgid(), tuple(os.getgroups()))
    identities = tuple(_identity(fd) for fd in (namespace, root, cwd))
    return Origin(namespace, root, cwd, umask, os.getcwd(), ids, identities)
