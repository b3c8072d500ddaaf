"""Pytest's end of a forked child's pipes: its frames as they come, its crash output meanwhile.

The child writes frames to one pipe and faulthandler's tracebacks to another.
Both are read as data arrives, so that neither can fill and block the child
(a crash dumping deep stacks of many threads writes more than a pipe holds);
what faulthandler wrote is kept up to a bound. While waiting, a deadline and
a child stopped by a signal (which would otherwise wait forever) are noticed.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator

from . import _frames

STOP_GRACE = 1.0
"""Seconds a stopped child may stay stopped (something may continue it) before it counts."""
_IDLE_CHECK = 0.25
"""Seconds between checks for a stopped child while nothing arrives."""


class ChildStopped(Exception):
    """The child stayed stopped by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Channel:
    """The child's report and faulthandler pipes, read together until it is done or gone."""

    def __init__(self, pid: int, reports: int, stacks: int) -> None:
        self.pid = pid
        self._reports = reports
        self._stacks = stacks
        self._stack_chunks: list[bytes] = []
        self._stack_bytes = 0
        self._dropped = 0
        self._gone = _pidfd(pid)
        self._poller = select.poll()
        for fd in (reports, stacks, self._gone):
            if fd is not None:
                self._poller.register(fd, select.POLLIN)
        self._stopped_since: float | None = None
        self._stacks_open = True

    def frames(self, deadline: float | None) -> Iterator[tuple[int, bytes]]:
        """Frames until the child is gone and nothing is left to read.

        End of file alone is not enough: a process the test forked may hold the
        write end open long after the child died, and a child that closed its
        descriptors may run on (or stop). Past ``deadline`` (a
        ``time.monotonic()`` value) it raises ``TimeoutError``; a child that
        stays stopped raises ``ChildStopped``.
        """
        buffer = bytearray()
        reports_open = True
        while True:
            yield from _frames.take_frames(buffer)
            wait = _IDLE_CHECK
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            ready = dict(self._poller.poll(max(0, int(wait * 1000)) + 1))
            if self._stacks in ready and self._stacks_open:
                self._drain_stacks()
            if reports_open and self._reports in ready:
                chunk = os.read(self._reports, 1 << 20)
                buffer += chunk
                if not chunk:
                    if self._gone is None:  # before Linux 5.3: end of file has to do
                        return
                    reports_open = False
                    self._poller.unregister(self._reports)
            elif self._gone is not None and self._gone in ready:
                if self._stacks_open:
                    self._drain_stacks()
                return
            elif not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError
                self._check_stopped()

    def stacks(self, settle: float = 0.0) -> str:
        """What faulthandler wrote; ``settle``: wait up to that long for it to write
        (stopping once it wrote and then paused)."""
        deadline = time.monotonic() + settle
        before = self._stack_bytes + self._dropped
        while self._stacks_open and (left := deadline - time.monotonic()) > 0:
            if select.select([self._stacks], [], [], min(left, 0.1))[0]:
                self._drain_stacks()
            elif self._stack_bytes + self._dropped > before:
                break
        text = b"".join(self._stack_chunks).decode(errors="replace")
        if self._dropped:
            text += f"\n[pytest-mountns: {self._dropped} more bytes of tracebacks not kept]\n"
        return text

    def close(self) -> None:
        for fd in (self._reports, self._stacks, self._gone):
            if fd is not None:
                os.close(fd)

    def _drain_stacks(self) -> None:
        """Read what is there now, keeping up to ``MAX_SECTION`` bytes."""
        os.set_blocking(self._stacks, False)
        try:
            while chunk := os.read(self._stacks, 65536):
                room = max(_frames.MAX_SECTION - self._stack_bytes, 0)
                self._stack_chunks.append(chunk[:room])
                self._stack_bytes += min(len(chunk), room)
                self._dropped += len(chunk) - min(len(chunk), room)
        except BlockingIOError:
            return
        self._stacks_open = False  # end of file: stop polling it
        self._poller.unregister(self._stacks)

    def _check_stopped(self) -> None:
        try:
            info = os.waitid(os.P_PID, self.pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_code != os.CLD_STOPPED:
            self._stopped_since = None
            return
        now = time.monotonic()
        if self._stopped_since is None:
            self._stopped_since = now
        elif now - self._stopped_since >= STOP_GRACE:
            raise ChildStopped(info.si_status)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # before Linux 5.3: end of file has to do
        return None
