"""Break the plugin on purpose, once per mutation, and see whether the suite notices.

Usage: ``python tests/mutate.py [NAME ...]`` from a checkout (not in CI: it runs
the whole suite once per mutation). Each mutation is applied to a fresh copy of
the tracked files, and the suite runs there (``-n 2 -x``), importing the copy.
A mutation the suite does not catch is a blind spot: a behaviour no test holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name: (file, text to find, what to put instead)
MUTATIONS = {
    "--mountns-all ignored": (
        "pytest_mountns/_policy.py",
        "_state.of(item.config).settings.isolate_all\n        or ",
        "",
    ),
    "in-process silently forks": (
        "pytest_mountns/_policy.py",
        "return wants_in_process(item, declared) and state.why_not_in_process() is None",
        "return False",
    ),
    "reports from any process": (
        "pytest_mountns/_frames.py",
        "if os.getpid() != self.owner:",
        "if False:",
    ),
    "the child's logreport not silenced": (
        "pytest_mountns/_child.py",
        "_internals.silence_logreport_except(self._config, self)",
        "pass",
    ),
    "no leak check": (
        "pytest_mountns/_isolating.py",
        "    changes = watch.changes()\n",
        "    changes = None\n",
    ),
    "/ made private without MS_REC": (
        "pytest_mountns/_namespace.py",
        '_linux.mount(None, "/", None, MountFlag.REC | kind)',
        '_linux.mount(None, "/", None, kind)',
    ),
    "leftover processes not ended": (
        "pytest_mountns/_child.py",
        "killed = _processes.view().end_descendants()",
        "killed = {}",
    ),
    "a spare's targets not checked again": (
        "pytest_mountns/_forking.py",
        "_fits(spare, item, nextitem) and spare.isolation.still_valid()",
        "_fits(spare, item, nextitem)",
    ),
    "a spare's namespace kept after the host's table changed": (
        "pytest_mountns/_forking.py",
        "    if _mount_table(config).touched():",
        "    if False:",
    ),
    "reports pickled whatever they hold": (
        "pytest_mountns/_frames.py",
        "    if not all(_plain(value) for value in vars(report).values()):",
        "    if False:",
    ),
    "targets made in a bind's source": (
        "pytest_mountns/_plan.py",
        "            return mount.source, False\n",
        "            return mount.source, True\n",
    ),
    "the creation guard off": (
        "pytest_mountns/_namespace.py",
        "    if os.stat(ancestor).st_dev not in owned:",
        "    if False:",
    ),
    "SIGCHLD left ignored": (
        "pytest_mountns/_processes.py",
        "    if not on_main or signal.getsignal(signal.SIGCHLD) != signal.SIG_IGN:",
        "    if True:",
    ),
    "faulthandler's pipe not drained": (
        "pytest_mountns/_channel.py",
        "            if self._stacks in ready and self._stacks_open:\n"
        "                self._drain_stacks()\n",
        "",
    ),
    "a stopped child waited for": (
        "pytest_mountns/_channel.py",
        "                self._check_stopped()\n",
        "                pass\n",
    ),
    "Ctrl-C interrupts the teardown too": (
        "pytest_mountns/_child.py",
        "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    raise KeyboardInterrupt",
        "    raise KeyboardInterrupt",
    ),
    "credentials not restored on the way back": (
        "pytest_mountns/_thread_namespace.py",
        "    _restore_ids(*origin.ids)\n",
        "",
    ),
    "no chroot on the way back": (
        "pytest_mountns/_thread_namespace.py",
        '    os.chroot(".")\n',
        "",
    ),
    "every capability in effect in a user namespace": (
        "pytest_mountns/_namespace.py",
        "keep_only_capabilities(CAPABILITIES_IN_EFFECT, CAPABILITIES_PERMITTED,",
        "keep_only_capabilities(CAPABILITIES_PERMITTED, CAPABILITIES_PERMITTED,",
    ),
    "xdist's workers pass their capabilities on": (
        "pytest_mountns/_session.py",
        "    if inherited:\n",
        "    if False:\n",
    ),
    "hermetic asked for, not applied": (
        "pytest_mountns/_namespace.py",
        "    if plan.hermetic:\n",
        "    if False:\n",
    ),
    "hermetic: an overlay's mounts not moved onto it": (
        "pytest_mountns/_layout.py",
        "visit(child, carried=not covered, into=into)",
        "visit(child, carried=True, into=into)",
    ),
    "hermetic: the layout not worked out again after a mount": (
        "pytest_mountns/_layout.py",
        "        elif self._watch.touched():\n",
        "        elif False:\n",
    ),
    "hermetic: the new root chrooted into, not moved over /": (
        "pytest_mountns/_hermetic.py",
        '        _linux.mount(".", "/", None, MountFlag.MOVE)\n',
        "",
    ),
    "auto never enters the session": (
        "pytest_mountns/_session.py",
        '(userns == "auto" and mode == "inprocess")',
        "False",
    ),
}


def copy_of_the_checkout(into: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (os.fsdecode(path) for path in tracked)):
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    for untracked in ("pytest_mountns", "tests"):  # work in progress counts too
        for path in (REPO / untracked).rglob("*.py"):
            target = into / path.relative_to(REPO)
            if not target.exists():
                shutil.copy2(path, target)


def run(name: str, file: str, old: str, new: str) -> tuple[bool, float, str]:
    with tempfile.TemporaryDirectory(prefix="mountns-mutant-") as directory:
        copy = Path(directory)
        copy_of_the_checkout(copy)
        source = copy / file
        text = source.read_text()
        if text.count(old) != 1:
            return False, 0.0, f"cannot apply: {old!r} found {text.count(old)} times in {file}"
        source.write_text(text.replace(old, new))
        env = {**os.environ, "PYTHONPATH": str(copy)}
        probe = [sys.executable, "-c", "import pytest_mountns; print(pytest_mountns.__file__)"]
        imported = subprocess.run(probe, cwd=copy, env=env, capture_output=True, text=True).stdout
        if not imported.startswith(str(copy)):
            return False, 0.0, f"the copy is not what Python imports: {imported}"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-n", "2", "-x", "-q", "-p", "no:cacheprovider"],
            cwd=copy, env=env, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        failed = [
            line
            for line in done.stdout.splitlines()
            if line.startswith(("FAILED tests/", "ERROR tests/"))
        ]
        return done.returncode != 0, time.monotonic() - started, (failed or [""])[0]


def main(names: list[str]) -> int:
    chosen = {name: MUTATIONS[name] for name in names} if names else MUTATIONS
    failed, seconds, detail = run("control", "README.md", "# pytest-mountns", "# pytest-mountns")
    if failed:  # the copy itself must pass, or a "caught" means nothing
        print(f"the unbroken copy fails the suite ({seconds:.0f}s): {detail}")
        return 2
    print(f"control  {seconds:6.0f}s  the unbroken copy passes", flush=True)
    missed = 0
    for name, (file, old, new) in chosen.items():
        caught, seconds, detail = run(name, file, old, new)
        missed += not caught
        verdict = "caught" if caught else "MISSED"
        print(f"{verdict:7} {seconds:6.0f}s  {name}  {detail[:110]}", flush=True)
    print(f"{len(chosen) - missed} of {len(chosen)} caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
