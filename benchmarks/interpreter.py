"""The Python that runs pytest: a cached venv with pytest 8, pytest-forked and this checkout.

pytest-forked fails every test on pytest 9, so every variant runs from that
venv: the same interpreter and the same pytest. Where it cannot be built, the
interpreter running the benchmark runs the plugin from the checkout, and the
forked variants are skipped.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import facts
from failures import tail

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "pytest-mountns-bench"
VENV_REQUIREMENTS = ("pytest>=8.4,<9", "pytest-forked", "pytest-xdist")


@dataclass(frozen=True)
class Interpreter:
    python: str
    pythonpath: tuple[str, ...]
    """Put ahead of the suite's directory on PYTHONPATH."""
    plugin_args: tuple[str, ...]
    """``-p pytest_mountns.plugin`` where the plugin is not installed, so not auto-loaded."""
    forked: bool
    note: str
    xdist: bool
    env: dict[str, str] = field(default_factory=dict)


def source_digest() -> str:
    """A hash of what gets installed, so the venv's copy is replaced when the checkout changes."""
    digest = hashlib.sha256()
    files = [REPO / "pyproject.toml", *sorted((REPO / "pytest_mountns").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def pip(python: Path, *args: str) -> None:
    """Run pip quietly; on failure raise with the end of its output."""
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{tail(done.stdout + done.stderr)}")


def install_checkout(python: Path) -> None:
    """Install a copy of the checkout: pip builds in the source tree, and this one is shared."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "benchmarks"
    )
    with tempfile.TemporaryDirectory(prefix="mountns-bench-src-") as scratch:
        copy = Path(scratch) / "src"
        shutil.copytree(REPO, copy, ignore=ignore)
        pip(python, "--no-deps", "--force-reinstall", str(copy))


def build_venv() -> Path:
    """The venv's python: created once, its copy of the plugin refreshed when the source changed."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = CACHE / f"venv-py{version}"
    python = venv / "bin" / "python"
    stamp = venv / "bench-stamp.json"
    wanted = {"requirements": list(VENV_REQUIREMENTS), "source": source_digest()}
    have = json.loads(stamp.read_text()) if stamp.exists() else {}
    if have.get("requirements") != wanted["requirements"] or not python.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip(python, *VENV_REQUIREMENTS)
        have = {"requirements": wanted["requirements"]}
    if have.get("source") != wanted["source"]:
        install_checkout(python)
    stamp.write_text(json.dumps(wanted))
    return python


def checkout() -> str:
    """The commit of the checkout, and whether what gets installed differs from it."""
    git = ["git", "-C", str(REPO)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "pytest_mountns", "pyproject.toml"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{commit} + uncommitted changes" if status else commit


def versions(python: str) -> str:
    """Python, pytest and pytest-forked versions as the given interpreter sees them."""
    return facts.ask(python, "versions").stdout.strip()


def autoloads_plugin(pythonpath: Sequence[str]) -> bool:
    """Whether pytest, run from this interpreter with ``pythonpath``, loads the plugin itself."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    return facts.ask(sys.executable, "autoloads-plugin", env).stdout.strip() == "True"


def choose() -> Interpreter:
    """The benchmark venv, or this interpreter with the checkout on its path and no forked."""
    try:
        python = str(build_venv())
        venv = Path(python).parents[1]
        return Interpreter(python, (), (), True, f"venv {venv}: {versions(python)}", True)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"note: the benchmark venv could not be built ({error});", file=sys.stderr)
        print("note: skipping pytest-forked, running this interpreter", file=sys.stderr)
    pythonpath = (str(REPO),)
    plugin_args = () if autoloads_plugin(pythonpath) else ("-p", "pytest_mountns.plugin")
    note = f"{sys.executable} with {REPO} on PYTHONPATH: {versions(sys.executable)}"
    # Importing the checkout itself: write no __pycache__ into it.
    no_bytecode = {"PYTHONDONTWRITEBYTECODE": "1"}
    return Interpreter(sys.executable, pythonpath, plugin_args, False, note, False, no_bytecode)
