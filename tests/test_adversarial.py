"""The cases of shared/ADVERSARIAL.md not covered elsewhere, run with / shared where it matters.

Every run checks, besides its own expectation, that the (throwaway) mount
table is unchanged and that pytest went on to the next test.
"""

from __future__ import annotations

import os
import shlex
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests._helpers import outcomes as summary
from tests._helpers import run_in_shared_root

HOSTILE = """
import atexit, ctypes, os, signal, subprocess, sys, threading, time, pytest

START = (os.getcwd(), os.umask(0o022))
TARGET = {target!r}
ATEXIT_FILE = {atexit_file!r}


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("an exception that cannot be pickled")
        self.lock = threading.Lock()


@pytest.mark.mountns
def test_segfault():
    ctypes.string_at(0)


@pytest.mark.mountns
def test_unpicklable_exception():
    raise Unpicklable()


@pytest.mark.mountns
def test_unpicklable_property(record_property):
    record_property("callback", threading.Lock())


@pytest.mark.mountns
def test_closes_every_descriptor():
    os.closerange(3, 65536)


@pytest.mark.mountns
def test_new_session():
    os.setsid()


@pytest.mark.mountns
def test_default_sigpipe():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    print("x" * 100_000)


@pytest.mark.mountns
def test_changes_cwd_env_umask():
    os.chdir("/")
    os.environ["MOUNTNS_HOSTILE"] = "1"
    os.umask(0o777)


def test_parent_is_unaffected():
    assert (os.getcwd(), os.umask(0o022)) == START
    assert "MOUNTNS_HOSTILE" not in os.environ


@pytest.mark.mountns
def test_leaves_a_thread_running():
    threading.Thread(target=time.sleep, args=(300,)).start()


@pytest.mark.mountns
def test_atexit_and_buffered_output():
    atexit.register(lambda: open(ATEXIT_FILE, "w").close())
    sys.stdout.write("buffered, no newline")


@pytest.mark.mountns
def test_nested_namespaces():
    script = f"mount --make-rshared / && mount -t tmpfs none {{TARGET}} && touch {{TARGET}}/x"
    subprocess.run(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script],
                   check=True)


@pytest.mark.mountns
def test_skip_inside():
    pytest.skip("skipped inside")


@pytest.mark.mountns
@pytest.mark.xfail(reason="fails inside", strict=True)
def test_xfail_inside():
    assert 0


def test_last_one_runs():
    assert os.listdir(TARGET) == []
    assert not os.path.exists(ATEXIT_FILE)
"""


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """Test name -> (outcome, message) from a junit file."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, (child.get("message") or "") + (child.text or "")
        found[case.get("name", "")] = (outcome, message)
    return found


def test_hostile_tests_under_a_shared_root(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("target")
    atexit_file = pytester.path / "atexit-ran"
    pytester.makepyfile(
        test_hostile=HOSTILE.format(target=str(target), atexit_file=str(atexit_file))
    )
    junit = pytester.path / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA"]
    command += [f"--junitxml={junit}", "-o", "junit_logging=all"]
    result = run_in_shared_root(
        "cat /proc/self/mountinfo > before && "
        f"{shlex.join(command)}; cat /proc/self/mountinfo > after",
        cwd=pytester.path,
        timeout=120,
    )
    found = outcomes(junit)
    assert found["test_segfault"][0] == "failure"
    assert "killed by SIGSEGV (signal 11)" in found["test_segfault"][1]
    assert "Fatal Python error: Segmentation fault" in found["test_segfault"][1]
    assert "in test_segfault" in found["test_segfault"][1]
    assert found["test_unpicklable_exception"][0] == "failure"
    assert "an exception that cannot be pickled" in found["test_unpicklable_exception"][1]
    assert found["test_closes_every_descriptor"][0] == "failure"
    assert "lost its report pipe" in found["test_closes_every_descriptor"][1]
    assert found["test_skip_inside"][0] == "skipped"
    assert found["test_skip_inside"][1].startswith("skipped inside")
    assert found["test_xfail_inside"][0] == "skipped"
    for passing in (
        "test_unpicklable_property",
        "test_new_session",
        "test_default_sigpipe",
        "test_changes_cwd_env_umask",
        "test_parent_is_unaffected",
        "test_leaves_a_thread_running",
        "test_atexit_and_buffered_output",
        "test_nested_namespaces",
        "test_last_one_runs",
    ):
        assert found[passing][0] == "passed", (passing, found[passing], result.stdout)
    xml = junit.read_text()
    assert 'name="callback" value="&lt;unlocked _thread.lock object' in xml
    assert result.stdout.count("buffered, no newline") == 1
    assert (pytester.path / "after").read_text() == (pytester.path / "before").read_text()
    assert not atexit_file.exists()


def test_a_multithreaded_pytest_still_isolates_even_in_a_user_namespace(
    pytester: pytest.Pytester,
) -> None:
    """unshare(CLONE_NEWUSER) refuses a multithreaded caller; the forked child has one thread."""
    pytester.makeconftest(
        """
import threading, time, pytest

@pytest.fixture(scope="session", autouse=True)
def background_thread():
    threading.Thread(target=time.sleep, args=(300,), daemon=True).start()
"""
    )
    pytester.makepyfile(
        """
import os, pytest

@pytest.mark.mountns(os.getcwd())
def test_isolated():
    assert os.listdir(".") == []
"""
    )
    result = pytester.runpytest_subprocess("--mountns-userns=always", timeout=60)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("how", [["--mountns-all"], []])
def test_under_xdist(pytester: pytest.Pytester, how: list[str]) -> None:
    pytester.makepyfile(
        """
import os, pytest

NAMESPACE = os.stat("/proc/self/ns/mnt").st_ino

@pytest.mark.mountns(os.getcwd())
@pytest.mark.parametrize("i", range(6))
def test_marked(i):
    assert os.listdir(".") == []

@pytest.mark.parametrize("i", range(6))
def test_unmarked(i, request):
    isolated = request.config.getoption("mountns_all")
    assert (os.stat("/proc/self/ns/mnt").st_ino != NAMESPACE) is isolated
"""
    )
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", *how, timeout=120)
    result.assert_outcomes(passed=12)


def test_without_proc_isolation_is_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mountns
def test_isolated():
    pass
"""
    )
    pytest_command = shlex.join([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs"])
    result = run_in_shared_root(f"umount -l /proc && {pytest_command}", cwd=pytester.path)
    assert summary(result.stdout) == {"skipped": 1}, result.stdout + result.stderr
    assert "isolation unavailable: /proc is not usable" in result.stdout


def test_overlay_and_bind_paths_with_colons_and_commas(pytester: pytest.Pytester) -> None:
    """Overlay's option string can't carry ':' or ','; the plugin passes descriptors instead."""
    odd = pytester.mkdir("a:b,c")
    (odd / "kept.txt").write_text("real")
    source = pytester.mkdir("src:1,2")
    (source / "sub").mkdir()
    pytester.makepyfile(
        f"""
import os, pytest

@pytest.mark.mountns(overlay=[{str(odd)!r}])
def test_overlay():
    with open(os.path.join({str(odd)!r}, "kept.txt"), "w") as f:
        f.write("changed")

@pytest.mark.mountns(tmpfs=[{str(source / "sub")!r}], ro_bind={{{str(odd)!r}: {str(source)!r}}})
def test_recursive_bind_of_a_tree_with_submounts():
    pass
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert (odd / "kept.txt").read_text() == "real"


def test_a_bind_of_a_tree_with_submounts_brings_them_along(pytester: pytest.Pytester) -> None:
    source = pytester.mkdir("source")
    (source / "inner").mkdir()
    target = pytester.mkdir("target")
    (target / "inner").mkdir()
    pytester.makepyfile(
        f"""
import os, pytest

def test_binds_a_tree(mountns):
    inner = mountns.tmpfs({str(source / "inner")!r})
    (inner / "only-in-the-tmpfs").write_text("x")
    mountns.bind({str(source)!r}, {str(target)!r}, readonly=True)
    assert os.listdir({str(target / "inner")!r}) == ["only-in-the-tmpfs"]
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert os.listdir(source / "inner") == [] and os.listdir(target / "inner") == []
