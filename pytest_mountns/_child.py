"""The forked child: enter the isolation, run setup, call and teardown, send everything back.

Whatever pytest would show for the test (each phase's report, the reports
other plugins log, the warnings) goes to pytest's process, which logs it;
nothing is reported from here. The child always ends with ``os._exit``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import json
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Generator
from typing import NoReturn

import pytest

from . import _adapters, _frames, _internals, _isolation, _linux, _output, _phases, _processes

STACKS_SIGNAL = signal.SIGRTMIN + 4
"""Asks a child that overran its timeout to write its Python stacks."""


def main(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    hooks: ChildHooks,
    ready: Callable[[], None],
    enter: Callable[[], None],
    fd: int,
    parent_pid: int,
    stacks_fd: int,
    go: Callable[[], tuple[float, float]],
) -> NoReturn:
    """Get ready (the isolation's ``ready``: a namespace of its own), wait for ``go`` (a
    spare waits there for its turn, the alarm to set), then run the test, whose setup
    starts with ``enter`` (the mounts).

    What comes before ``go`` depends only on what pytest's process checks before
    it lets a spare go (the same state, the same mount table), so a spare does it
    while the test before it runs, off the critical path.
    """
    gc.disable()  # a collection would touch, and so copy, every page of the parent's heap
    writer = _frames.Writer(fd)
    try:
        _linux.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(1)
        _linux.become_subreaper()
        _processes.view()  # /proc held before the test runs: it may mount over /proc
        _processes.restore_in_child()
        faulthandler.enable(file=stacks_fd, all_threads=True)  # a crash's traceback, for its report
        faulthandler.register(STACKS_SIGNAL, file=stacks_fd, all_threads=True)
        _internals.drop_inherited_finalizers(item)
        _internals.renew_request(item)
        hooks.activate(_after_ready(ready, enter), writer)
        alarm = go()
        if alarm[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *alarm)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt_once)
        junit_mark = _internals.junit_mark(item.config)
        results_mark = _adapters.marks(item)
        with warnings.catch_warnings(record=True) as caught:
            try:
                _run(item, nextitem, writer)
                ending: tuple[int, bytes] = (_frames.DONE, b"" if hooks.saw_everything else b"?")
            except pytest.exit.Exception as stop:
                _internals.teardown_everything_quietly(item)
                ending = (_frames.EXIT, json.dumps([stop.msg, stop.returncode]).encode())
            except KeyboardInterrupt:
                _internals.teardown_everything_quietly(item)
                ending = (_frames.INTERRUPT, b"")
        writer.send_warnings(caught)
        junit = _internals.junit_changes(item.config, item, junit_mark)
        if junit is not None:
            writer.send(_frames.JUNIT, json.dumps(junit, default=repr).encode())
        _output.output(item).update(_adapters.aggregated(item, results_mark))
        try:
            output = _output.pickled(item)
        except ValueError as error:
            writer.send(_frames.PROBLEM, str(error).encode())
        else:
            if output is not None:
                writer.send(_frames.OUTPUT, output)
        state = _adapters.item_state(item)
        if state is not None:
            writer.send(_frames.ITEM_STATE, state)
        _save_coverage(item.config)  # before the end: pytest-cov may combine at once
        writer.send(*ending)
    except BaseException:
        writer.send(_frames.ERROR, traceback.format_exc().encode())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _linux.flush_c_stdio()
        os._exit(0)


def _after_ready(ready: Callable[[], None], enter: Callable[[], None]) -> Callable[[], None]:
    """Get ready now; what is left for the test's setup (``EnterAtSetup``): ``enter``,
    or raising again what getting ready raised, where a failure to isolate is reported."""
    try:
        ready()
    except Exception as error:
        failure = error

        def fail_again() -> None:
            raise failure

        return fail_again
    return enter


def _save_coverage(config: pytest.Config) -> None:
    """Keep what coverage measured here: ``os._exit`` skips its save at exit.

    Written as a parallel data file, which pytest-cov (or ``coverage combine``)
    merges with the parent's; so only when one of them will.
    """
    coverage = sys.modules.get("coverage")
    cov = coverage.Coverage.current() if coverage is not None else None
    if cov is None or not (
        config.pluginmanager.hasplugin("_cov") or cov.get_option("run:parallel")
    ):
        return
    with contextlib.suppress(Exception):
        cov.stop()
        data = coverage.CoverageData(  # type: ignore[union-attr]
            basename=str(cov.get_option("run:data_file")), suffix=f"mountns.{os.getpid()}"
        )
        data.update(cov.get_data())
        data.write()


def _run(item: pytest.Item, nextitem: pytest.Item | None, writer: _frames.Writer) -> None:
    config = item.config

    def send(report: pytest.TestReport) -> None:
        if report.when == "call":
            # Plugins may settle the outcome here, from state only the child has
            # (pytest's subtests fail a test that holds failed subtests).
            config.hook.pytest_report_teststatus(report=report, config=config)
        writer.send_report(_frames.REPORT, config, report)

    _phases.run_phases(item, nextitem, send)
    _internals.teardown_everything_quietly(item)


def _interrupt_once(signum: int, frame: object) -> None:
    """Ctrl-C reaches the child twice, from the terminal and from pytest's process:
    the first interrupts the test, the second must not cut its teardown short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


class ChildHooks(_phases.EnterAtSetup):
    """The child's own hooks: enter first at setup, end leftovers, send logged reports.

    Registered once in pytest's process, where they do nothing; ``activate``
    in a child turns them on there, which costs less than a registration per fork.
    """

    def __init__(self, config: pytest.Config) -> None:
        super().__init__()
        self._config = config
        self._writer: _frames.Writer | None = None
        self.saw_everything = True
        """False where the test hid ``/proc`` from the child: pytest's process ends the rest."""

    def activate(self, enter: Callable[[], None], writer: _frames.Writer) -> None:
        """In the child: turn on (``enter`` runs first in the setup), and silence every
        other ``pytest_runtest_logreport``.

        Those report (terminal, junitxml, xdist's channel to its controller) and
        belong to pytest's process, which logs the forwarded report once.
        """
        self.arm(enter)
        self._writer = writer
        _internals.silence_logreport_except(self._config, self)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None]:
        """After the test's own teardown, even one that failed: end whatever it left
        running, daemons included."""
        try:
            return (yield)
        finally:
            self._end_leftovers(item)

    def _end_leftovers(self, item: pytest.Item) -> None:
        if self._writer is None:
            return
        try:
            killed = _processes.view().end_descendants()
        except _processes.ProcessesUnseen:
            self.saw_everything = False
            return
        if killed:
            _phases.warn_at(item, _isolation.leftover_warning(list(killed.values())))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._writer is not None:
            self._writer.send_report(_frames.LOGGED, self._config, report)
