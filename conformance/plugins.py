"""Run tiny projects that use popular pytest plugins plain and isolated; fail on any difference.

Each directory of ``plugin_projects`` is a small test project that leans on one plugin:
reruns, benchmarks, event loops, property tests, snapshots, reports and the like. The script
makes a venv (under the cache directory), installs pytest-mountns from this checkout and the
pinned plugins into it, and runs each project three times, each time in a fresh copy, with
plugin autoloading off so that only the plugins it names with ``-p`` take part: plain (without
pytest-mountns), with ``--mountns-all`` and with ``--mountns-all --mountns-mode=inprocess``.
Plain against each isolated run, it compares the exit code, the counts of the closing summary
line, the junitxml report (each test case's outcome, message and properties), the journal the
tests write in their copy and the plugin's own artefact (benchmark names, the falsifying example
and the example database, snapshot files, report outcomes). An INTERNALERROR, or a run still
going after its timeout, is a mismatch too. A difference listed in ``KNOWN`` (and in the
plugin table of docs/compatibility.md) is shown, not counted; a known one that matches fails the
run, so that both lists are corrected.

    python conformance/plugins.py [--cache DIR] [--timeout S] [--keep DIR] [--ref REF] [NAME ...]
"""

from __future__ import annotations

import argparse
import difflib
import html
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import venv
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECTS_DIR = Path(__file__).resolve().parent / "plugin_projects"
PINS = (
    "pytest==9.2.0",
    "pytest-rerunfailures==16.7",
    "flaky==3.8.1",
    "pytest-benchmark==5.3.1",
    "pytest-asyncio==1.5.0",
    "hypothesis==6.170.17",
    "pytest-mock==3.17.0",
    "pytest-timeout==2.4.0",
    "pytest-randomly==5.1.0",
    "pytest-order==1.5.0",
    "pytest-dependency==0.6.1",
    "syrupy==7.0.2",
    "pytest-json-report==1.5.0",
    "pytest-html==4.2.0",
)
MODES = {
    "plain": ["-p", "no:mountns"],
    "fork": ["-p", "mountns", "--mountns-all"],
    "inprocess": ["-p", "mountns", "--mountns-all", "--mountns-mode=inprocess"],
}
SUMMARY = re.compile(r"^=*\s*(\d+ [a-z ]+(?:, \d+ [a-z ]+)*) in \d+(?:\.\d+)?s\b")
COUNT = re.compile(r"(\d+) ([a-z]+(?: [a-z]+)?)")
LINES = 10  # differences shown per mode
KNOWN = {
    # (project, mode): why it differs; docs/compatibility.md says the same
    ("flaky", "fork"): "flaky reruns by patching pytest's call_and_report, which the child "
    "does not use: each test runs once",
    ("flaky", "inprocess"): "flaky reruns by patching pytest's call_and_report, which the "
    "runner does not use: each test runs once",
    ("asyncio", "inprocess"): "a session loop's executor thread, started by the first test's "
    "to_thread, stays in that test's namespace: LeftoverThreadWarning says so",
    ("syrupy", "fork"): "snapshots are collected in the child, written by pytest's process: none",
}
Observation = dict[str, object]
Artefact = Callable[[Path, Path, list[str]], object]


@dataclass(frozen=True)
class Project:
    """How one inner project runs: the plugins it loads, its options, its steps, its artefact.

    Options may name ``{out}``, a directory outside the copy for reports. Steps run one after
    the other in the same copy (syrupy writes snapshots, then checks them).
    """

    plugins: tuple[str, ...]
    options: tuple[str, ...] = ()
    steps: tuple[tuple[str, ...], ...] = ((),)
    artefact: Artefact | None = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "pytest-mountns-conformance"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds per pytest run")
    parser.add_argument("--keep", type=Path, help="make the copies here and leave them")
    parser.add_argument("--ref", help="install this commit of the checkout, not its work tree")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(PROJECTS)}")
    arguments = parser.parse_args()
    unknown = [name for name in arguments.names if name not in PROJECTS]
    if unknown:
        parser.error(f"no such project: {', '.join(unknown)}")
    python = _venv(arguments.cache, _source(arguments.cache, arguments.ref))
    failures = 0
    for name in arguments.names or PROJECTS:
        observed = {
            mode: _observe(python, name, mode, arguments.timeout, arguments.keep) for mode in MODES
        }
        failures += _report(name, observed)
    return 1 if failures else 0


def _source(cache: Path, ref: str | None) -> Path:
    """The checkout's work tree, or one of its commits exported (the tree may be mid-edit)."""
    if ref is None:
        return REPO
    target = cache / "source"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tree:
        tree.extractall(target, filter="data")
    return target


def _venv(cache: Path, source: Path) -> Path:
    """A venv with the pinned plugins and this checkout, made once and refreshed each time."""
    home = cache / "plugins-venv"
    python = home / "bin" / "python"
    if not python.exists():
        venv.create(home, with_pip=True)
    _pip(python, "install", "--quiet", *PINS)
    # The checkout keeps its version while it changes: reinstall it, its dependencies are pinned.
    _pip(python, "install", "--quiet", "--no-deps", "--force-reinstall", str(source))
    return python


def _pip(python: Path, *args: str) -> None:
    """pip of the venv; a failure stops the script, as there is nothing to compare then."""
    subprocess.run([str(python), "-m", "pip", *args], check=True, timeout=900)


def _observe(python: Path, name: str, mode: str, timeout: float, keep: Path | None) -> Observation:
    """Run one project's steps in a fresh copy under one mode; what came out, normalised."""
    project = PROJECTS[name]
    observation: Observation = {}
    with _workspace(name, mode, keep) as (copy, out):
        outputs = []
        for index, step in enumerate(project.steps):
            label = f"step {index + 1} " if len(project.steps) > 1 else ""
            junit = out / f"junit-{index}.xml"
            command = _command(python, project, mode, out, step)
            command += [f"--junitxml={junit}", f"--basetemp={out / f'basetemp-{index}'}"]
            code, output = _pytest(command, copy, timeout)
            (out / f"output-{index}.txt").write_text(output)  # for a look with --keep
            output = _normalise(output, copy, out)
            outputs.append(output)
            observation[f"{label}exit"] = code
            observation[f"{label}INTERNALERROR"] = "INTERNALERROR" in output
            observation[f"{label}summary"] = _summary(output)
            observation[f"{label}junit"] = _junit(junit, copy, out)
            if not isinstance(code, int):
                observation[f"{label}tail"] = output.strip().splitlines()[-3:]
                break
        journal = copy / "journal.log"
        if journal.exists():
            observation["journal"] = journal.read_text().splitlines()
        if project.artefact is not None:
            observation["artefact"] = project.artefact(copy, out, outputs)
    return observation


def _command(
    python: Path, project: Project, mode: str, out: Path, step: tuple[str, ...]
) -> list[str]:
    """pytest with exactly the project's plugins (autoload is off) and the mode's options."""
    command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "--color=no"]
    for plugin in project.plugins:
        command += ["-p", plugin]
    return [*command, *MODES[mode], *(option.format(out=out) for option in project.options), *step]


@contextmanager
def _workspace(name: str, mode: str, keep: Path | None) -> Iterator[tuple[Path, Path]]:
    """A fresh copy of the project and a report directory beside it, so no run sees another's."""
    if keep is not None:
        root = keep / name / mode
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        yield _populate(name, root)
        return
    with tempfile.TemporaryDirectory(prefix=f"mountns-{name}-{mode}-") as temporary:
        yield _populate(name, Path(temporary))


def _populate(name: str, root: Path) -> tuple[Path, Path]:
    """Copy the project into ``root/project``; make ``root/out`` for reports and outputs."""
    copy, out = root / "project", root / "out"
    shutil.copytree(PROJECTS_DIR / name, copy, ignore=shutil.ignore_patterns("__pycache__"))
    out.mkdir()
    return copy, out


def _pytest(command: list[str], cwd: Path, timeout: float) -> tuple[int | str, str]:
    """Exit code (or a note that it timed out) and output; a hung run's process group dies."""
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=30)
            return f"timeout after {timeout:g} s", output
    return process.returncode, output


def _environment() -> dict[str, str]:
    """This environment, minus what loads plugins behind ``-p``'s back or changes their output.

    pytest and Hypothesis behave differently under ``CI``: drop it, so CI sees what we see.
    """
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_ADDOPTS", "PYTEST_PLUGINS", "CI", "BUILD_NUMBER"}
    }
    environment.update(
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONHASHSEED="0",
        COLUMNS="100",
    )
    return environment


def _normalise(text: str, copy: Path, out: Path) -> str:
    """The text with this run's own directories named alike, so runs compare."""
    return text.replace(str(out), "<out>").replace(str(copy), "<project>")


def _summary(output: str) -> dict[str, int] | None:
    """The counts of pytest's closing line, by kind (``passed``, ``rerun``, ``subtests passed``)."""
    for line in reversed(output.splitlines()):
        match = SUMMARY.match(line)
        if match:
            counts = COUNT.findall(match[1])
            return {re.sub(r"(error|warning)s$", r"\1", kind): int(n) for n, kind in counts}
        if re.match(r"^=*\s*no tests ran in ", line):
            return {}
    return None


def _junit(path: Path, copy: Path, out: Path) -> dict[str, str] | None:
    """Each test case's outcome, message's first line and properties, keyed by class and name."""
    if not path.exists():
        return None
    cases: dict[str, str] = {}
    for case in ElementTree.parse(path).iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        message = ""
        for child in case:
            if child.tag in {"failure", "error", "skipped"}:
                outcome = child.tag
                first = (child.get("message") or "").splitlines()[:1]
                message = _normalise(first[0], copy, out) if first else ""
        properties = [f"{p.get('name')}={p.get('value')}" for p in case.iter("property")]
        shown = " ".join([outcome, repr(message), *properties])
        cases[key] = f"{cases[key]} | {shown}" if key in cases else shown
    return cases


def _report(name: str, observed: dict[str, Observation]) -> int:
    """Print plain's line and one per isolated mode; how many of them failed."""
    plain = observed["plain"]
    broken = _broken(plain)
    print(f"{'BROKEN  ' if broken else 'ok      '} {name:14} {'plain':10}{_counts(plain)}")
    for line in broken:
        print(f"{'':34}{line}")
    failures = int(bool(broken))
    for mode, observation in observed.items():
        if mode == "plain":
            continue
        differences = _differences(plain, observation)
        known = KNOWN.get((name, mode))
        if known is not None and not differences:
            status, failed = "FIXED   ", True  # so docs/compatibility.md says so too
            differences = [f"matches now; drop it from KNOWN and docs/compatibility.md: {known}"]
        elif known is not None:
            status, failed = "known   ", False
            differences = [f"known: {known}", *differences]
        else:
            status, failed = ("MISMATCH", True) if differences else ("ok      ", False)
        print(f"{status} {name:14} {mode:10}{_counts(observation)}")
        for line in differences[:LINES]:
            print(f"{'':34}{line}")
        if len(differences) > LINES:
            print(f"{'':34}... and {len(differences) - LINES} more")
        failures += failed
    return failures


def _broken(plain: Observation) -> list[str]:
    """What makes the plain run useless as a reference: no summary, a crash, no artefact."""
    problems = []
    for aspect, value in plain.items():
        if aspect.endswith("INTERNALERROR") and value:
            problems.append(f"{aspect}: True")
        if aspect.endswith("summary") and value is None:
            problems.append(f"{aspect}: none found")
        if aspect.endswith("exit") and not isinstance(value, int):
            problems.append(f"{aspect}: {value}")
    if "artefact" in plain and _missing(plain["artefact"]):
        problems.append(f"artefact: {_short(plain['artefact'])}")  # the harness reads it wrong
    return problems


def _missing(artefact: object) -> bool:
    """Whether an artefact is absent (None, or a "no ..." note), whole or in part."""
    if artefact is None or isinstance(artefact, str):
        return True
    parts = artefact.values() if isinstance(artefact, dict) else []
    return any(part is None or (isinstance(part, list) and None in part) for part in parts)


def _counts(observation: Observation) -> str:
    """The last step's summary counts, as pytest would write them."""
    summaries = [value for aspect, value in observation.items() if aspect.endswith("summary")]
    counts = summaries[-1] if summaries else None
    if not isinstance(counts, dict):
        return "no summary"
    return ", ".join(f"{number} {kind}" for kind, number in counts.items()) or "no tests ran"


def _differences(plain: Observation, isolated: Observation) -> list[str]:
    """One short line per thing that differs: plain's value, then the isolated run's."""
    lines = []
    for aspect in [*plain, *(key for key in isolated if key not in plain)]:
        before, after = plain.get(aspect, "absent"), isolated.get(aspect, "absent")
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            for key in [*before, *(key for key in after if key not in before)]:
                if before.get(key) != after.get(key):
                    was, now = before.get(key, "absent"), after.get(key, "absent")
                    lines.append(f"{aspect} {key}: {_short(was)} -> {_short(now)}")
        elif isinstance(before, list) and isinstance(after, list):
            changed = [line for line in difflib.ndiff(before, after) if line[:1] in "+-"]
            lines.append(f"{aspect}: {_short('; '.join(changed), 200)}")
        else:
            lines.append(f"{aspect}: {_short(before)} -> {_short(after)}")
    return lines


def _short(value: object, width: int = 90) -> str:
    """The value on part of one line."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _flaky_report(copy: Path, out: Path, outputs: list[str]) -> object:
    """flaky's own report: which test it reran, how often, and what it decided."""
    match = re.search(r"===Flaky Test Report===(.*?)===End Flaky Test Report===", outputs[-1], re.S)
    if not match:
        return None
    return [line.strip() for line in match[1].splitlines() if line.strip().startswith("test_")]


def _benchmark_names(copy: Path, out: Path, outputs: list[str]) -> object:
    """The benchmarks that made it into ``--benchmark-json``."""
    path = out / "benchmark.json"
    if not path.exists():
        return "no benchmark json"
    return sorted(bench["fullname"] for bench in json.loads(path.read_text())["benchmarks"])


def _hypothesis(copy: Path, out: Path, outputs: list[str]) -> object:
    """The falsifying example of each step, and whether the example database kept any.

    A forced seed turns the database off, so the seeded step saves nothing; the unseeded step
    after it does (its examples vary, the shrunk failure does not).
    """
    examples = []
    for output in outputs:
        pattern = r"^E?\s*(?:Falsifying example|Failing test case): .*?^E?\s*\)$"
        example = re.search(pattern, output, re.M | re.S)
        examples.append(re.sub(r"^E?\s*", "", example[0], flags=re.M) if example else None)
    database = copy / ".hypothesis-db"
    entries = [path for path in database.rglob("*") if path.is_file()] if database.exists() else []
    return {"falsifying examples": examples, "database has entries": bool(entries)}


def _snapshots(copy: Path, out: Path, outputs: list[str]) -> object:
    """The snapshot files and their content, and syrupy's own tally after each step."""
    files = {
        str(path.relative_to(copy)): path.read_text()
        for path in sorted(copy.rglob("__snapshots__/**/*"))
        if path.is_file()
    }
    tallies = [
        line.strip()
        for output in outputs
        for line in output.splitlines()
        if re.match(r"^\d+ snapshots? ", line)
    ]
    return {"files": files or None, "syrupy tallies": tallies}


def _json_report(copy: Path, out: Path, outputs: list[str]) -> object:
    """Each test's outcome and the outcome of each of its phases, as pytest-json-report saw it."""
    path = out / "report.json"
    if not path.exists():
        return "no json report"
    outcomes = {}
    for test in json.loads(path.read_text())["tests"]:
        phases = [
            f"{key}={test[key]['outcome']}" for key in ("setup", "call", "teardown") if key in test
        ]
        outcomes[test["nodeid"]] = " ".join([test["outcome"], *phases])
    return outcomes


def _html_report(copy: Path, out: Path, outputs: list[str]) -> object:
    """Each test's results as pytest-html wrote them into its report's data blob."""
    path = out / "report.html"
    if not path.exists():
        return "no html report"
    blob = re.search(r'data-jsonblob="([^"]*)"', path.read_text())
    if not blob:
        return "no data blob in the html report"
    tests = json.loads(html.unescape(blob[1]))["tests"]
    return {nodeid: [result["result"] for result in results] for nodeid, results in tests.items()}


PROJECTS: dict[str, Project] = {
    "rerunfailures": Project(("rerunfailures",), ("--reruns", "2")),
    "flaky": Project(("flaky",), artefact=_flaky_report),
    "benchmark": Project(
        ("benchmark",),
        (
            "--benchmark-json={out}/benchmark.json",
            "--benchmark-max-time=0.01",
            "--benchmark-min-rounds=2",
            "--benchmark-warmup=off",
        ),
        artefact=_benchmark_names,
    ),
    "asyncio": Project(("asyncio",)),
    "hypothesis": Project(
        ("hypothesispytest",), steps=(("--hypothesis-seed=0",), ()), artefact=_hypothesis
    ),
    "mock": Project(("pytest_mock",)),
    "timeout": Project(("timeout",), ("--timeout=30",)),
    "unittest": Project(()),
    "randomly": Project(("randomly",), ("--randomly-seed=1",)),
    "order": Project(("pytest_order",)),
    "dependency": Project(("dependency",)),
    "syrupy": Project(("syrupy",), steps=(("--snapshot-update",), ()), artefact=_snapshots),
    "json_report": Project(
        ("pytest_jsonreport",),
        ("--json-report", "--json-report-file={out}/report.json"),
        artefact=_json_report,
    ),
    "html": Project(
        ("metadata", "html"),
        ("--html={out}/report.html", "--self-contained-html"),
        artefact=_html_report,
    ),
}


if __name__ == "__main__":
    sys.exit(main())
