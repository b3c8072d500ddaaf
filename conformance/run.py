"""Run real projects' own suites plain and isolated by either runner; fail unless counts match.

Each project is a pinned sdist from PyPI that ships its tests and needs
nothing but pytest. The script makes a venv (under the cache directory),
installs pytest-mountns from this checkout, pytest-randomly and the projects
into it, runs each suite five times, shuffled the same way by pytest-randomly:
plain, with ``--mountns-all`` and with ``--mountns-all --mountns-mode=inprocess``,
and both again with ``--mountns-hermetic``.
It compares the closing summary lines: passed, failed, skipped, xfailed,
errors, warnings and subtests, all of them.

    python conformance/run.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECTS = {
    # sdist pin: the directory or file of its tests, inside the unpacked sdist
    "more-itertools==10.5.0": "tests",  # unittest, with subTest
    "six==1.17.0": "test_six.py",
    "cachetools==5.5.0": "tests",
    "idna==3.10": "tests",
}
ISOLATED = {
    "fork": ["--mountns-all"],
    "inprocess": ["--mountns-all", "--mountns-mode=inprocess"],
    "fork, hermetic": ["--mountns-all", "--mountns-hermetic=on"],
    "inprocess, hermetic": ["--mountns-all", "--mountns-mode=inprocess", "--mountns-hermetic=on"],
}
COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|warnings?|subtests? \w+)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "pytest-mountns-conformance"
    )
    arguments = parser.parse_args()
    python = _venv(arguments.cache)
    mismatches = 0
    for pin, tests in PROJECTS.items():
        source = _unpacked_sdist(python, pin, arguments.cache)
        plain = _summary(python, source, tests, [])
        isolated = {mode: _summary(python, source, tests, args) for mode, args in ISOLATED.items()}
        same = bool(plain) and all(counts == plain for counts in isolated.values())
        mismatches += not same
        print(f"{'ok ' if same else 'MISMATCH'} {pin:28} plain: {_show(plain)}")
        for mode, counts in isolated.items():
            if counts != plain:
                print(f"{'':38}{mode}: {_show(counts)}")
    return 1 if mismatches else 0


def _venv(cache: Path) -> Path:
    """A venv with this checkout and the projects installed, rebuilt when missing."""
    home = cache / "venv"
    python = home / "bin" / "python"
    if not python.exists():
        venv.create(home, with_pip=True)
    _pip(python, "install", "--quiet", str(REPO), "pytest-randomly", *PROJECTS)
    return python


def _unpacked_sdist(python: Path, pin: str, cache: Path) -> Path:
    """The pinned sdist, downloaded and unpacked once into a directory of its own."""
    target = cache / "sdists" / pin.replace("==", "-")
    if not target.exists():
        _pip(
            python,
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            pin,
            "-d",
            str(target),
        )
        [archive] = target.glob("*.tar.gz")
        with tarfile.open(archive) as sdist:
            sdist.extractall(target, filter="data")
    [unpacked] = [path for path in target.iterdir() if path.is_dir()]
    return unpacked


def _summary(python: Path, source: Path, tests: str, extra: list[str]) -> dict[str, int]:
    """The counts of pytest's closing line, run from a copy-free checkout of the sdist."""
    command = [str(python), "-m", "pytest", tests, "-p", "no:cacheprovider", "-q", *extra]
    command += ["-p", "randomly", "--randomly-seed=20261129"]  # shuffled, the same way twice
    result = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=900)
    lines = [line for line in result.stdout.splitlines() if " in " in line and COUNT.search(line)]
    if not lines:
        print(result.stdout[-2000:], result.stderr[-2000:], file=sys.stderr)
        return {}
    return {kind.rstrip("s"): int(number) for number, kind in COUNT.findall(lines[-1])}


def _show(counts: dict[str, int]) -> str:
    return ", ".join(f"{number} {kind}" for kind, number in sorted(counts.items())) or "no summary"


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", *args], check=True, timeout=900)


if __name__ == "__main__":
    sys.exit(main())
