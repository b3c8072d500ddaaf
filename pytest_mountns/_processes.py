"""Finding, waiting for and ending the processes a test left behind. Standard library only.

A subreaper adopts every orphan of its descendants, double-forked daemons
included, so "the processes a test left" are its subreaper's descendants.
They are read through a descriptor of ``/proc`` opened before the test ran,
as a test may mount over ``/proc`` in its namespace. A tree is frozen
(SIGSTOP) pass by pass until no process in it runs, so one that keeps
forking cannot outrun the walk, then killed whole. Only pids are waited
for, never ``waitpid(-1)`` (which would steal the exit statuses of the
test's own subprocesses), but in a child whose test is over.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator

ENDING_BOUND = 5.0
"""Seconds a tree may take to freeze and die before the rest is given up on."""


def fork() -> int:
    """``os.fork``, without CPython's warning (3.12+) that the process has threads.

    The warning comes once per fork, from pytest's machinery rather than the test,
    and ``-W error`` cannot catch it; the plugin says once per session which threads
    there are and what follows (``_runner._threads_at_fork``). Before 3.12 there is no
    such warning, and no filters to copy and restore at every fork.
    """
    if sys.version_info < (3, 12):
        return os.fork()
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"This process .* is multi-threaded", category=DeprecationWarning
        )
        return os.fork()


def other_threads() -> list[str]:
    """The names of this process's other Python threads, the plugin's own left out."""
    current = threading.current_thread()
    return [
        thread.name
        for thread in threading.enumerate()
        if thread is not current and not thread.name.startswith("pytest-mountns-")
    ]


class ProcessesUnseen(OSError):
    """``/proc`` cannot be read any more: the test closed or covered it."""


class Processes:
    """``/proc``, held open: what a test later mounts over the path changes nothing here."""

    def __init__(self) -> None:
        self._fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        info = os.fstat(self._fd)
        self._identity = (info.st_dev, info.st_ino)

    def _dir(self) -> int:
        """The descriptor, checked to be ``/proc`` still; reopened once if the test closed it."""
        for attempt in range(2):
            with contextlib.suppress(OSError):
                info = os.fstat(self._fd)
                if (info.st_dev, info.st_ino) == self._identity:
                    return self._fd
            if attempt == 0:
                with contextlib.suppress(OSError):
                    self._fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        raise ProcessesUnseen("/proc is closed or covered in this process")

    def _read(self, path: str) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir())
        with open(fd, "rb") as f:
            return f.read()

    def children(self, pid: int | str = "self") -> list[int]:
        """The live children of ``pid``, from every thread's ``children`` file."""
        found: list[int] = []
        for task in self._tasks(pid):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found.extend(
                    int(child) for child in self._read(f"{pid}/task/{task}/children").split()
                )
        return found

    def descendants(self, pid: int | str = "self") -> list[int]:
        """Through the ``children`` files: cheap, but a process that moves to another
        parent while they are read may be missed (``end`` walks again)."""
        found: list[int] = []
        pending = self.children(pid)
        while pending:
            child = pending.pop()
            found.append(child)
            pending.extend(self.children(child))
        return found

    def describe(self, pid: int) -> str:
        """``"1234 sleep 100"``, as ``ps`` would list it (through a live thread, if its
        main one ended)."""
        command = b""
        for task in itertools.chain([str(pid)], self._other_tasks(pid)):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                command = self._read(f"{pid}/task/{task}/cmdline").replace(b"\0", b" ").strip()
            if command:
                break
        return f"{pid} {command.decode(errors='replace') or '?'}"

    def _described_once_stopped(self, pid: int) -> str:
        """A process stopped in the middle of an ``execve`` stops only as the new program
        starts, and has its command line from then on: wait a moment for that."""
        deadline = time.monotonic() + 0.5
        while self._state(pid)[0] not in ("T", "t", "Z", "") and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.describe(pid)

    def started(self, pid: int) -> int:
        """When, in clock ticks since boot; 0 for a process gone."""
        return self._state(pid)[1]

    def _state(self, pid: int) -> tuple[str, int]:
        """(state letter, start time in clock ticks since boot); ``("", 0)`` if gone.

        A process whose main thread ended while another runs (``pthread_exit``)
        reads as a zombie in its own ``stat``: it is as alive as its threads.
        """
        try:
            fields = self._read(f"{pid}/stat").rsplit(b")", 1)[1].split()
            state, started = fields[0].decode(), int(fields[19])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return "", 0
        if state == "Z":
            state = next((self._task_state(pid, task) for task in self._other_tasks(pid)), "Z")
        return state, started

    def _other_tasks(self, pid: int) -> Iterator[str]:
        """The threads of ``pid`` but its main one that still live."""
        tasks = self._tasks(pid)
        return (
            task
            for task in tasks
            if task != str(pid) and self._task_state(pid, task) not in ("Z", "X")
        )

    def _task_state(self, pid: int, task: str) -> str:
        try:
            return self._read(f"{pid}/task/{task}/stat").rsplit(b")", 1)[1].split()[0].decode()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return "X"

    def _tasks(self, pid: int | str) -> list[str]:
        try:
            tasks = os.open(f"{pid}/task", os.O_RDONLY | os.O_DIRECTORY, dir_fd=self._dir())
        except FileNotFoundError:
            return []  # gone
        try:
            return os.listdir(tasks)
        finally:
            os.close(tasks)

    def mount_namespace(self, pid: int) -> int | None:
        """Its mount namespace, or None for a process gone or on its way out (an exiting
        process leaves its namespace before its children move to their new parent).
        Read through any live thread: the main one may have ended before the others.
        ``PermissionError`` for one this process may not inspect (non-dumpable, another
        user's)."""
        for task in itertools.chain([str(pid)], self._other_tasks(pid)):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                return os.stat(f"{pid}/task/{task}/ns/mnt", dir_fd=self._dir()).st_ino
        return None

    def end_descendants(self) -> dict[int, str]:
        """In a subreaper after its test: end every descendant and reap every child, the
        dead too (nothing else will wait for them now); the running ones, described."""
        killed = self.end(self.descendants, reap_any)
        reap_any()
        return killed

    def reap_orphans(self, since: int, keep: set[int]) -> int:
        """Reap children that died since ``since`` (clock ticks since boot), but for ``keep``:
        orphans adopted as a subreaper, which nothing else here will wait for. How many."""
        dead = [
            pid
            for pid in self.children()
            if pid not in keep and (state := self._state(pid))[0] == "Z" and state[1] >= since
        ]
        reap(dead)
        return len(dead)

    def end(self, walk: Callable[[], list[int]], reap_dead: Callable[[], int]) -> dict[int, str]:
        """Freeze what ``walk`` finds until it finds nothing new, then kill it all and
        reap it; the running ones, described.

        Each process is held by a pidfd, opened and checked (its start time) before it
        is signalled: pids come round again, and a busy machine hands a dead one's pid
        to another process soon. ``reap_dead`` runs before each walk (and says how
        many it reaped): a process that forks itself over and over leaves a dead
        child at each step, which would slow every walk down. A walk is quiet when
        it finds nothing new: a process it found that died before it could be frozen
        is something new, the first time (what it forked a moment before is out there).
        A process on its way out has left its namespace but not yet handed its
        children on: the walk goes on until it is dead. Once anything was found or
        reaped, the end takes two quiet walks in a row, a moment apart: a process that
        moved parents during one may be missed by it.
        """
        frozen: dict[tuple[int, int], tuple[int, str]] = {}  # (pid, start) -> (pidfd, described)
        departed: set[int] = set()
        quiet = 0
        something = False
        deadline = time.monotonic() + ENDING_BOUND
        try:
            while time.monotonic() < deadline:
                something = bool(reap_dead()) or something
                found = [(pid, self._freeze(pid, frozen)) for pid in walk()]
                if any(outcome == "frozen" for _, outcome in found):
                    quiet = 0
                    continue
                if any(outcome == "dying" for _, outcome in found):
                    something, quiet = True, 0  # what it had comes into view once it is dead
                    time.sleep(0.002)
                    continue
                gone = {pid for pid, outcome in found if outcome == "gone"} - departed
                if gone:  # one forked and died between the walk and the freeze
                    departed |= gone  # (a zombie below a frozen parent stays: once is enough)
                    something, quiet = True, 0
                    time.sleep(0.002)
                    continue
                quiet += 1
                if not (frozen or something) or quiet == 2:
                    break
                time.sleep(0.002)
            for key, (pidfd, described) in frozen.items():
                if described.endswith(" ?"):  # frozen inside an execve: no command line yet
                    frozen[key] = (pidfd, self._described_once_stopped(key[0]))
            for pidfd, _ in frozen.values():
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            ours = {pid for pid, _ in frozen}
            while ours and time.monotonic() < deadline and set(self.children()) & ours:
                reap(pid for pid in self.children() if pid in ours)  # and the orphans they had
        finally:
            for pidfd, _ in frozen.values():
                os.close(pidfd)
        return {pid: described for (pid, _), (_, described) in frozen.items()}

    def _freeze(self, pid: int, frozen: dict[tuple[int, int], tuple[int, str]]) -> str:
        """Stop ``pid``: ``"frozen"`` now, ``"known"`` (frozen before), ``"dying"`` (on
        its way out, its children not yet moved to their new parent), or ``"gone"``
        (dead, or its pid already another process's)."""
        state, started = self._state(pid)
        if (pid, started) in frozen:
            return "known"
        if state in ("", "Z"):
            return "gone"
        with contextlib.suppress(PermissionError):  # one it may not inspect is not dying
            if self.mount_namespace(pid) is None:
                return "dying"
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return "gone"
        if self._state(pid)[1] != started:  # not the process seen: its pid came round again
            os.close(pidfd)
            return "gone"
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signal.SIGSTOP)
        frozen[(pid, started)] = (pidfd, self.describe(pid))
        return "frozen"


_view: Processes | None = None


def view() -> Processes:
    """This process's ``/proc`` descriptor, opened once; a forked child inherits it."""
    global _view
    if _view is None:
        _view = Processes()
    return _view


def boot_ticks() -> int:
    """Now, in the unit of a process's start time in ``/proc/PID/stat``."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def reap_any() -> int:
    """Reap every child that died, whichever: only where nothing else will wait for one.
    How many."""
    reaped = 0
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            reaped += 1
    return reaped


def reap(pids: Iterable[int]) -> None:
    """Wait for each of ``pids`` that is a child of this process."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def wait_for(pid: int) -> int | None:
    """A child's exit code (negative: the signal), or None if the kernel reaped it already."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None  # SIGCHLD is ignored here after all (another thread, SA_NOCLDWAIT)
    return os.waitstatus_to_exitcode(status)


_sigchld_ignored_at_fork = False


@contextlib.contextmanager
def waitable_children() -> Iterator[None]:
    """Keep children waitable meanwhile: where SIGCHLD is ignored (an earlier test may
    set that in pytest's process), the kernel reaps them at once and their status is lost.

    A child forked meanwhile gets the ignored SIGCHLD back (``restore_in_child``),
    as the test would have found it without isolation.
    """
    global _sigchld_ignored_at_fork
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main or signal.getsignal(signal.SIGCHLD) != signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _sigchld_ignored_at_fork = True
    try:
        yield
    finally:
        _sigchld_ignored_at_fork = False
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def restore_in_child() -> None:
    if _sigchld_ignored_at_fork:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
