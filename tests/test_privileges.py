"""Getting the right to mount: root, a user namespace, or a skip that says exactly why.

The unprivileged path runs for real: the inner pytest runs as uid 65534
without capabilities, in a user namespace this test creates
(``unshare --user --map-user=65534``), and the kernel limits are set there too.
"""

from __future__ import annotations

import errno
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_mountns import _linux, _probe
from pytest_mountns._probe import Failure, diagnose
from tests._helpers import outcomes, own_tmp

# One runner only: without CAP_SYS_ADMIN, in-process mode forks (test_inprocess checks that).
pytestmark = pytest.mark.fork_only(reason="isolation without root forks whatever the mode")

AS_NOBODY = ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--"]
WITHOUT_CAPABILITIES = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]

PROJECT = """
import os, pytest

TARGET = {target!r}
PYTEST_NAMESPACE = os.stat("/proc/self/ns/mnt").st_ino

def fstype(path):
    found = None
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == path:
            found = fields[fields.index("-") + 1]
    return found

@pytest.mark.mountns(TARGET)
def test_marked():
    assert os.stat("/proc/self/ns/mnt").st_ino != PYTEST_NAMESPACE
    assert (os.getuid(), os.getgid()) == {ids!r}
    assert fstype(TARGET) == "tmpfs" and os.listdir(TARGET) == []
    open(os.path.join(TARGET, "x"), "w").close()

def test_fixture(isolated_tmpfs):
    assert (os.getuid(), os.getgid()) == {ids!r}
    (isolated_tmpfs / "x").write_text("x")
    assert fstype(str(isolated_tmpfs)) == "tmpfs"

def test_plain():
    assert os.stat("/proc/self/ns/mnt").st_ino == PYTEST_NAMESPACE
"""


def run(
    project: Path, *args: str, prefix: list[str], shell: str = ""
) -> subprocess.CompletedProcess[str]:
    command = [*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args]
    if shell:
        command = [
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            f"{shell} && {shlex.join(command)}",
        ]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    target = pytester.mkdir("target")
    os.chmod(pytester.path, 0o755)
    pytester.makepyfile(PROJECT.format(target=str(target), ids=(65534, 65534)))
    return pytester.path


def skips(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]


def test_an_unprivileged_user_is_isolated_in_a_user_namespace(project: Path) -> None:
    result = run(project, prefix=AS_NOBODY)
    assert outcomes(result.stdout) == {"passed": 3}, result.stdout + result.stderr
    assert "mountns: isolation available (user namespace as uid 65534, gid 65534)" in result.stdout
    assert os.listdir(project / "target") == []


def test_never_skips_naming_the_missing_privilege_and_require_errors(project: Path) -> None:
    result = run(project, "--mountns-userns=never", prefix=AS_NOBODY)
    assert outcomes(result.stdout) == {"passed": 1, "skipped": 2}, result.stdout + result.stderr
    reason = (
        "mountns: isolation unavailable: unshare(NEWNS): Operation not permitted (EPERM); "
        "a plain mount namespace needs root (CAP_SYS_ADMIN) and --mountns-userns=never "
        "rules out a user namespace"
    )
    assert len(skips(result)) == 2 and all(reason in line for line in skips(result))

    result = run(project, "--mountns-userns=never", "--mountns-require", prefix=AS_NOBODY)
    assert outcomes(result.stdout) == {"passed": 1, "errors": 2}, result.stdout + result.stderr
    assert result.stdout.count("--mountns-require turns this skip into an error") == 2

    (project / "pytest.ini").write_text(
        "[pytest]\nmountns_userns = never\nmountns_require = true\n"
    )
    result = run(project, prefix=AS_NOBODY)
    assert outcomes(result.stdout) == {"passed": 1, "errors": 2}, result.stdout + result.stderr


def test_a_process_pytest_may_not_inspect_is_left_alone(pytester: pytest.Pytester) -> None:
    """A fixture's agent that made itself non-dumpable (as ssh-agent does) hides its
    namespace from pytest's process: after a crashed test, it is neither the test's
    leftover nor a reason for an INTERNALERROR."""
    os.chmod(pytester.path, 0o755)
    pytester.makepyfile(
        """
import os, subprocess, sys, time, pytest

AGENT = "import ctypes, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); time.sleep(60)"

@pytest.fixture(scope="session")
def agent():
    process = subprocess.Popen([sys.executable, "-c", AGENT])
    time.sleep(0.5)  # it has made itself non-dumpable
    yield process
    assert process.poll() is None, "the agent was killed"
    process.kill()
    process.wait()

def test_agent_hidden(agent):
    try:
        os.stat(f"/proc/{agent.pid}/ns/mnt")
    except PermissionError:
        return
    pytest.fail("the agent's namespace is visible: this test proves nothing here")

@pytest.mark.mountns
def test_crashes(agent):
    os._exit(3)

@pytest.mark.mountns
def test_after(agent):
    pass
"""
    )
    result = run(pytester.path, prefix=AS_NOBODY)
    output = result.stdout + result.stderr
    assert "INTERNALERROR" not in output, output
    assert outcomes(result.stdout) == {"passed": 2, "failed": 1}, output
    assert "LeftoverProcessWarning" not in output


def test_user_namespace_mode_handles_basetemp_read_only_and_foreign_ids(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.chmod(pytester.path, 0o755)
    tmp, basetemp = own_tmp(pytester, monkeypatch)
    os.chmod(tmp, 0o777)
    pytester.makepyfile(
        f"""
import os, pytest

TMP = {tmp!r}

def test_a_unisolated(tmp_path):
    (tmp_path / "a").write_text("a")

@pytest.mark.mountns(TMP)
def test_b_tmp_path_under_tmpfs(tmp_path):
    (tmp_path / "kept").write_text("x")
    assert os.listdir(TMP) == ["basetemp"]  # only the way to basetemp

@pytest.mark.mountns(tmpfs={{TMP: "ro,size=1m"}})
def test_c_read_only():
    with pytest.raises(OSError):
        open(os.path.join(TMP, "x"), "w")

@pytest.mark.mountns(tmpfs={{TMP: "uid=12"}})
def test_d_foreign_uid():
    pass
"""
    )
    result = run(pytester.path, basetemp, prefix=AS_NOBODY)
    assert outcomes(result.stdout) == {"passed": 3, "errors": 1}, result.stdout + result.stderr
    assert (
        f"test_d_foreign_uid: @pytest.mark.mountns tmpfs[{tmp!r}] uid=12: in a user namespace "
        "only your own uid (65534) is mapped"
    ) in result.stdout
    assert [p.name for p in Path(tmp).glob("basetemp/*0/kept")] == ["kept"]
    assert sorted(os.listdir(tmp)) == ["basetemp"]


@pytest.mark.parametrize("kind", ["user", "mnt"])
def test_a_namespace_limit_names_the_knob(project: Path, kind: str) -> None:
    """The limit is set in an enclosing user namespace; the inner one still reads the default."""
    knob = f"/proc/sys/user/max_{kind}_namespaces"
    limit = "1" if kind == "user" else "0"  # 1: room for nobody's own namespace only
    result = run(project, prefix=AS_NOBODY, shell=f"echo {limit} > {knob}")
    assert outcomes(result.stdout) == {"passed": 1, "skipped": 2}, result.stdout + result.stderr
    reason = (
        f"No space left on device (ENOSPC); the limit on {kind} namespaces is reached "
        f"(user.max_{kind}_namespaces=2147483647 here; an enclosing user namespace sets it lower)"
    )
    assert all(reason in line for line in skips(result)), skips(result)


def test_root_without_capabilities_is_told_why(project: Path) -> None:
    result = run(project, prefix=WITHOUT_CAPABILITIES)
    assert outcomes(result.stdout) == {"passed": 1, "skipped": 2}, result.stdout + result.stderr
    reason = "write '0 0 1': Operation not permitted on /proc/self/uid_map (EPERM); mapping uid 0"
    assert all(reason in line for line in skips(result)), skips(result)


def test_root_can_ask_for_a_user_namespace(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("target")
    pytester.makepyfile(PROJECT.format(target=str(target), ids=(0, 0)))
    result = pytester.runpytest("--mountns-userns=always")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["mountns: isolation available (user namespace as uid 0, gid 0)*"])
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["mountns: isolation available (root: a plain mount namespace*"])


def test_bad_userns_values_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--mountns-userns=sometimes", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --mountns-userns: invalid choice: 'sometimes'*"])
    pytester.makeini("[pytest]\nmountns_userns = sometimes\n")
    result = pytester.runpytest_subprocess(timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini mountns_userns='sometimes': must be one of auto, always, never, session"]
    )


def test_a_multithreaded_caller_gets_einval_and_is_told_so() -> None:
    """The kernel's answer, for real, in a forked helper that starts a thread first."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        try:
            _linux.unshare(_linux.CloneFlag.NEWUSER)
            answer = "no error"
        except OSError as error:
            answer = f"{error.errno} {error.strerror}"
        os.write(write_fd, answer.encode())
        os._exit(0)
    os.close(write_fd)
    with open(read_fd) as reader:
        number, message = reader.read().split(" ", 1)
    os.waitpid(pid, 0)
    assert int(number) == errno.EINVAL
    reason = diagnose(Failure(errno.EINVAL, message), True, False, "auto", {})
    assert reason.startswith(
        "unshare(NEWUSER): Invalid argument (EINVAL); the calling process is multithreaded"
    )


NO_KNOBS: dict[str, str | None] = dict.fromkeys(_probe.KNOBS)


@pytest.mark.parametrize(
    ("failure", "user_namespace", "privileged", "knobs", "expected"),
    [
        pytest.param(
            Failure(errno.EPERM, "unshare(NEWUSER): Operation not permitted"),
            True,
            False,
            {**NO_KNOBS, "kernel.unprivileged_userns_clone": "0"},
            "(EPERM); user namespaces are disabled for unprivileged users "
            "(kernel.unprivileged_userns_clone=0): run 'sysctl -w "
            "kernel.unprivileged_userns_clone=1'",
            id="debian-userns-disabled",
        ),
        pytest.param(
            Failure(errno.EPERM, "write 'deny': Operation not permitted", "/proc/self/setgroups"),
            True,
            False,
            {**NO_KNOBS, "kernel.apparmor_restrict_unprivileged_userns": "1"},
            "on /proc/self/setgroups (EPERM); Ubuntu's AppArmor restricts unprivileged user "
            "namespaces (kernel.apparmor_restrict_unprivileged_userns=1)",
            id="ubuntu-apparmor",
        ),
        pytest.param(
            Failure(errno.EPERM, "unshare(NEWUSER): Operation not permitted"),
            True,
            False,
            NO_KNOBS,
            "(EPERM); a seccomp or container policy forbids it (Docker's default profile does)",
            id="seccomp",
        ),
        pytest.param(
            Failure(errno.EPERM, "unshare(NEWNS): Operation not permitted"),
            False,
            True,
            NO_KNOBS,
            "(EPERM); a seccomp or container policy forbids it",
            id="docker-without-cap-sys-admin",
        ),
        pytest.param(
            Failure(errno.EACCES, "mount(None, REC|PRIVATE): Permission denied"),
            False,
            True,
            NO_KNOBS,
            "(EACCES); an AppArmor or SELinux policy denies mount (Docker's docker-default "
            "profile does): run the container with --security-opt apparmor=unconfined",
            id="docker-default-apparmor",
        ),
        pytest.param(
            Failure(errno.ENOSPC, "unshare(NEWUSER): No space left on device"),
            True,
            False,
            {**NO_KNOBS, "user.max_user_namespaces": "0"},
            "(ENOSPC); the limit on user namespaces is reached (user.max_user_namespaces=0 "
            "here): raise it, e.g. 'sysctl -w user.max_user_namespaces=15000'",
            id="max-user-namespaces",
        ),
    ],
)
def test_each_environment_gets_its_own_cause_and_fix(
    failure: Failure,
    user_namespace: bool,
    privileged: bool,
    knobs: dict[str, str | None],
    expected: str,
) -> None:
    """Rows the kernel here can't be made to produce (AppArmor, seccomp) are injected."""
    assert expected in diagnose(failure, user_namespace, privileged, "auto", knobs)


def test_not_linux_skips_with_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    availability = _probe.probe()
    assert not availability.available
    assert availability.how == "mount namespaces need Linux; this is darwin"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (
            [],
            [
                "  you: uid 0, gid 0; CAP_SYS_ADMIN: yes",
                "    --mountns-userns=auto (default): root: a plain mount namespace per test",
                "    --mountns-userns=session: nothing to enter as root: *",
                "    --mountns-mode=inprocess: works",
            ],
        ),
        (
            AS_NOBODY,
            [
                "  you: uid 65534, gid 65534; CAP_SYS_ADMIN: no",
                "    plain (root): unshare(NEWNS): Operation not permitted (EPERM)*",
                "    --mountns-userns=auto (default): user namespace as uid 65534, gid 65534",
                "    --mountns-userns=session: one user namespace for the session, as uid 65534, "
                "gid 65534: a plain mount namespace per test",
                "    --mountns-mode=inprocess: works, in one user namespace for the session "
                "(auto enters it)",
            ],
        ),
    ],
)
def test_the_doctor_says_what_works_and_which_mode_pytest_uses(
    prefix: list[str], expected: list[str]
) -> None:
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "pytest_mountns"],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = result.stdout.splitlines()
    assert output[0].startswith("pytest-mountns ") and output[1].startswith("  kernel: Linux ")
    assert "  user.max_mnt_namespaces: " in "\n".join(output)
    pytest.LineMatcher(output).fnmatch_lines(expected, consecutive=False)
