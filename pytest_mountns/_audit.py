"""What hermetic tests tried to write: a report section, a failure, junitxml, the summary.

The cover (``_hermetic``) is made where the test runs, and looked at there,
once the test's own teardown ended and before its teardown report is made:
in the forked child, or in pytest's thread still inside the test's namespace.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Sequence

import pytest

from . import _hermetic
from ._plan import MountPlan, is_within

MODES = ("off", "on", "report", "strict")
SECTION = "mountns writes"
SHOWN = 10
"""Paths shown per test in the summary and a strict failure; the section has them all."""


class HermeticReadOnlyWarning(pytest.PytestWarning):
    """A file system a hermetic test sees could not be overlaid, and is read-only instead."""


class Entered:
    """The cover of the test running here, and what its declared mounts leave out."""

    def __init__(self, cover: _hermetic.Cover, plan: MountPlan, mode: str) -> None:
        self.cover = cover
        self.plan = plan
        self.mode = mode

    def writes(self) -> list[_hermetic.Write]:
        """The writes outside the declared mounts, the mount points made for them left out."""
        targets = [mount.target for mount in self.plan.mounts] + list(self.plan.make)
        return [write for write in self.cover.writes() if not _near(write.path, targets)]


entered_key = pytest.StashKey[Entered]()


def enter(item: pytest.Item, cover: _hermetic.Cover | None, plan: MountPlan, mode: str) -> None:
    """Right after the cover is made, at the test's setup; says which file systems are read-only."""
    if cover is None:
        return
    item.stash[entered_key] = Entered(cover, plan, mode)
    if cover.readonly:
        places = ", ".join(layer.mountpoint for layer in cover.layers) or "none"
        warnings.warn(
            HermeticReadOnlyWarning(
                f"mountns: hermetic: {', '.join(cover.readonly)} made read-only instead of "
                "overlaid: in a user namespace an overlay cannot copy up what belongs to ids "
                "it does not map (root's directories, EOVERFLOW). Overlays only where you "
                f"write: {places}; run as root to overlay everything"
            ),
            stacklevel=1,
        )


def leave(item: pytest.Item) -> None:
    """In-process, on the way back: the cover's descriptors go (a forked child just ends)."""
    entered = item.stash.get(entered_key, None)
    if entered is not None:
        del item.stash[entered_key]
        entered.cover.close()


def writes(item: pytest.Item) -> list[_hermetic.Write]:
    """For ``mountns.writes()``: what the running test wrote outside its declared mounts."""
    entered = item.stash.get(entered_key, None)
    if entered is None:
        raise RuntimeError(
            "mountns.writes() needs a hermetic test: hermetic=True on its marker, "
            "or --mountns-hermetic"
        )
    return entered.writes()


class Audit:
    """Registered once per session: looks after each hermetic test's teardown; counts them."""

    def __init__(self) -> None:
        self.wrote: dict[str, list[str]] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        result = yield
        entered = item.stash.get(entered_key, None)
        if entered is None or entered.mode not in ("report", "strict"):
            return result
        found = entered.writes()
        if not found:
            return result
        lines = [f"{write.change}: {write.path}" for write in found]
        item.add_report_section("teardown", SECTION, "\n".join(lines) + "\n")
        item.user_properties.extend(("mountns_write", line) for line in lines)
        if entered.mode == "strict":
            raise pytest.fail.Exception(
                "mountns: hermetic (strict): the test wrote outside its declared mounts:\n"
                + _listed(lines),
                pytrace=False,
            )
        return result

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            if report.when == "teardown" and SECTION in title:
                self.wrote[report.nodeid] = content.splitlines()

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.wrote:
            return
        terminalreporter.write_sep("=", "mountns: writes outside the declared mounts")
        terminalreporter.write_line(
            f"{len(self.wrote)} test(s) wrote outside their declared mounts "
            "(kept away from the host):"
        )
        for nodeid, lines in self.wrote.items():
            terminalreporter.write_line(f"{nodeid}:\n{_listed(lines)}")


def _near(path: str, targets: list[str]) -> bool:
    return any(is_within(target, path) or is_within(path, target) for target in targets)


def _listed(lines: Sequence[str]) -> str:
    shown = [f"  {line}" for line in lines[:SHOWN]]
    if len(lines) > SHOWN:
        shown.append(f"  ... and {len(lines) - SHOWN} more")
    return "\n".join(shown)
