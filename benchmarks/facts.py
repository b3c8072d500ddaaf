"""Facts the benchmark needs from the interpreter that runs pytest, answered by that interpreter.

The benchmark itself may run on another Python (or one without pytest), so it
runs this script with the interpreter in question and reads the one line it
prints::

    python benchmarks/facts.py versions               # Python, pytest, pytest-forked
    python benchmarks/facts.py autoloads-plugin       # True if an entry point loads the plugin
    python benchmarks/facts.py why-in-process-forks   # empty if --mountns-mode=inprocess works
    python benchmarks/facts.py writable-file-systems  # what --mountns-hermetic overlays here
"""

import argparse
import importlib.metadata
import platform
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

SCRIPT = str(Path(__file__).resolve())


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> str:
    answer = f"Python {platform.python_version()}, pytest {version('pytest')}"
    forked = version("pytest-forked")
    return f"{answer}, pytest-forked {forked}" if forked else answer


def autoloads_plugin() -> str:
    """Where an entry point names the plugin (installed, or an egg-info on the path)."""
    points = importlib.metadata.entry_points(group="pytest11")
    return str(any(point.value == "pytest_mountns.plugin" for point in points))


def why_in_process_forks() -> str:
    """The plugin falls back to forking silently (only the header, which ``-q`` hides, says
    so): the in-process variant would then measure the fork runner under another name."""
    from pytest_mountns import _session

    return _session.why_in_process_forks() or ""


def writable_file_systems() -> str:
    """What a hermetic test overlays here, counted from the plugin's own rule."""
    from pytest_mountns import _layout

    layout = _layout.Watched().layout()
    mine = [mount.path for mount in layout.root.walk() if mount.overlaid]
    names = ", ".join(mine)
    return f"{len(mine)} writable file system(s) of {len(layout.points)} mounts: {names}"


FACTS: dict[str, Callable[[], str]] = {
    "versions": versions,
    "autoloads-plugin": autoloads_plugin,
    "why-in-process-forks": why_in_process_forks,
    "writable-file-systems": writable_file_systems,
}


def ask(
    python: str, fact: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run this script with ``python``: the answer is its stdout, stripped."""
    return subprocess.run([python, SCRIPT, fact], env=env, cwd=cwd, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fact", choices=FACTS, help="the one to print")
    print(FACTS[parser.parse_args().fact]())


if __name__ == "__main__":
    main()
