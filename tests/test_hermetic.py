"""The hermetic cover (issue 18, first part): every writable file system behind an overlay.

Each test forks a child that enters a private mount namespace, covers it
(``_hermetic.cover``) and, once it has checked that ``/`` is an overlay, writes
to the host's paths; the parent then checks that the host has none of it,
and what the audit listed.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_mountns import _hermetic, _layout, _linux, _mountinfo, _namespace
from pytest_mountns._linux import MountFlag
from pytest_mountns._plan import is_within
from tests._helpers import answer_of_a_child
from tests._throwaway_root import NOBODY, Run, run_pytest

BASETEMP = "/tmp/basetemp"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="covers as root; a user namespace is not done"),
    pytest.mark.fork_only(reason="calls the cover directly, in a child of its own"),
]


def in_covered_child(
    body: Callable[[_hermetic.Cover], object], through: tuple[str, ...] = ()
) -> object:
    """Run ``body`` in a forked child under the cover; its JSON-able result, or raise
    with the child's error. Nothing is written before ``/`` is seen to be an overlay."""

    def covered() -> str:
        _namespace.enter_private_namespace(_linux.mount_namespace_id(), False)
        cover = _hermetic.cover(through)
        [root] = [entry for entry in _mountinfo.read() if entry.mountpoint == "/"][-1:]
        if root.fstype != "overlay":
            raise RuntimeError(f"/ is {root.fstype}, not covered: nothing written")
        return json.dumps({"result": body(cover)})

    answer = answer_of_a_child(covered)
    if not answer.startswith("{"):
        raise AssertionError(answer)
    return json.loads(answer)["result"]


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = path.read_bytes() if path.is_file() else None
    return found


def test_writes_anywhere_reach_nothing_and_are_listed(tmp_path: Path) -> None:
    """~, /tmp, /var/tmp and a project directory; a deletion and a rename."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "kept.txt").write_text("kept")
    (project / "deleted.txt").write_text("deleted")
    (project / "renamed.txt").write_text("renamed")
    name = f"mountns-hermetic-{uuid.uuid4().hex}"
    home = Path(os.path.expanduser("~")) / name
    tmp = Path("/tmp") / name
    var_tmp = Path("/var/tmp") / name
    before = snapshot(project)

    def body(cover: _hermetic.Cover) -> object:
        home.write_text("home")
        tmp.write_text("tmp")
        var_tmp.mkdir()
        (var_tmp / "inside").write_text("inside")
        (project / "kept.txt").write_text("changed")
        (project / "deleted.txt").unlink()
        (project / "renamed.txt").rename(project / "new-name.txt")
        return [(write.path, write.change) for write in cover.writes()]

    listed = in_covered_child(body)
    assert snapshot(project) == before
    assert not home.exists() and not tmp.exists() and not var_tmp.exists()
    assert sorted(map(tuple, listed)) == sorted(  # type: ignore[arg-type]
        [
            (str(home), "created"),
            (str(tmp), "created"),
            (str(var_tmp), "created"),
            (str(var_tmp / "inside"), "created"),
            (str(project / "kept.txt"), "modified"),
            (str(project / "deleted.txt"), "deleted"),
            (str(project / "renamed.txt"), "deleted"),
            (str(project / "new-name.txt"), "created"),
        ]
    )


def test_submounts_stay_reachable_and_behave() -> None:
    """/proc/self is the child, /dev/null swallows, /dev/shm is covered too."""
    name = f"mountns-hermetic-{uuid.uuid4().hex}"

    def body(cover: _hermetic.Cover) -> object:
        with open("/dev/null", "w") as null:
            null.write("gone")
        Path("/dev/shm", name).write_text("shm")
        return {
            "self": int(os.readlink("/proc/self")),
            "pid": os.getpid(),
            "writes": [(write.path, write.change) for write in cover.writes()],
            "kinds": {e.mountpoint: e.fstype for e in _mountinfo.read()},
        }

    result = in_covered_child(body)
    assert isinstance(result, dict)
    assert result["self"] == result["pid"]
    assert result["writes"] == [[f"/dev/shm/{name}", "created"]]
    assert not Path("/dev/shm", name).exists()
    kinds = result["kinds"]
    assert kinds["/proc"] == "proc" and kinds["/dev"] == "devtmpfs" and kinds["/sys"] == "sysfs"
    assert kinds["/dev/shm"] == "overlay" and kinds["/"] == "overlay"
    passed_through = {e.mountpoint for e in _mountinfo.read() if e.fstype in _layout.PASS_THROUGH}
    assert passed_through <= set(kinds), passed_through - set(kinds)  # /sys/fs/cgroup, /dev/pts


def test_a_tree_of_mounts_keeps_its_shape_under_the_cover(tmp_path: Path) -> None:
    """Writable file systems on writable ones, a read-only one on a writable one and a
    writable one on that, two stacked at one place: each reads as before, each writable
    one is covered, the read-only one stays so, the hidden one stays hidden."""
    a = tmp_path / "a"

    def tmpfs(path: Path, *files: str) -> None:
        path.mkdir(exist_ok=True)
        _linux.mount("tmpfs", str(path), "tmpfs")
        for name in files:
            (path / name).write_text(name)

    def covered() -> str:
        _namespace.enter_private_namespace(_linux.mount_namespace_id(), False)
        tmpfs(a, "a.txt")
        tmpfs(a / "b", "b.txt")
        tmpfs(a / "b" / "deep", "deep.txt")
        _linux.set_readonly(str(a / "b" / "deep"))
        tmpfs(a / "c", "c.txt")
        (a / "c" / "w").mkdir()
        _linux.set_readonly(str(a / "c"))
        tmpfs(a / "c" / "w", "w.txt")
        tmpfs(a / "d", "under.txt")
        tmpfs(a / "d", "top.txt")
        cover = _hermetic.cover()
        seen = sorted(str(p.relative_to(a)) for p in a.rglob("*.txt"))
        for place in (a, a / "b", a / "c" / "w", a / "d"):
            (place / "new").write_text("new")
        refused = []
        for place in (a / "b" / "deep", a / "c"):
            try:
                (place / "new").write_text("new")
            except OSError as error:
                refused.append(error.errno)
        kinds = {
            e.mountpoint: e.fstype for e in _mountinfo.read() if is_within(e.mountpoint, str(a))
        }
        writes = [(w.path, w.change) for w in cover.writes() if is_within(w.path, str(a))]
        return json.dumps({"seen": seen, "refused": refused, "kinds": kinds, "writes": writes})

    answer = answer_of_a_child(covered)
    assert answer.startswith("{"), answer
    result = json.loads(answer)
    assert result["seen"] == ["a.txt", "b/b.txt", "b/deep/deep.txt", "c/c.txt", "c/w/w.txt",
                              "d/top.txt"]  # fmt: skip
    assert result["refused"] == [errno.EROFS, errno.EROFS]
    assert result["kinds"] == {
        str(a): "overlay",
        str(a / "b"): "overlay",
        str(a / "b" / "deep"): "tmpfs",
        str(a / "c"): "tmpfs",
        str(a / "c" / "w"): "overlay",
        str(a / "d"): "overlay",
    }
    assert sorted(map(tuple, result["writes"])) == sorted(
        (str(place / "new"), "created") for place in (a, a / "b", a / "c" / "w", a / "d")
    )


def test_files_mounted_on_their_own_are_covered_by_a_copy(tmp_path: Path) -> None:
    """Docker mounts /etc/hosts, /etc/resolv.conf and /etc/hostname each on its own; an
    overlay takes directories only. A writable one is covered by a copy (same content,
    mode, owner), a read-only one stays read-only, a socket (docker.sock) still answers."""
    import socket

    real, read_only, hosts = tmp_path / "real", tmp_path / "read-only", tmp_path / "hosts"
    resolv, sock_path, sock_mount = tmp_path / "resolv", tmp_path / "sock", tmp_path / "docker.sock"
    real.write_text("127.0.0.1 real\n")
    real.chmod(0o640)
    read_only.write_text("nameserver 10.0.0.1\n")
    for target in (hosts, resolv, sock_mount):
        target.write_text("underneath")

    def covered() -> str:
        _namespace.enter_private_namespace(_linux.mount_namespace_id(), False)
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(sock_path))
        server.listen()
        _linux.mount(str(real), str(hosts), None, MountFlag.BIND)
        _linux.mount(str(read_only), str(resolv), None, MountFlag.BIND)
        _linux.set_readonly(str(resolv), recursive=False)
        _linux.mount(str(sock_path), str(sock_mount), None, MountFlag.BIND)
        cover = _hermetic.cover()
        seen = (hosts.read_text(), oct(hosts.stat().st_mode & 0o777), resolv.read_text())
        hosts.write_text("10.0.0.2 test\n")
        refused = None
        try:
            resolv.write_text("x")
        except OSError as error:
            refused = error.errno
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(sock_mount))
        client.close()
        writes = [(w.path, w.change) for w in cover.writes() if is_within(w.path, str(tmp_path))]
        return json.dumps({"seen": seen, "refused": refused, "writes": writes})

    answer = answer_of_a_child(covered)
    assert answer.startswith("{"), answer
    result = json.loads(answer)
    assert result["seen"] == ["127.0.0.1 real\n", "0o640", "nameserver 10.0.0.1\n"]
    assert result["refused"] == errno.EROFS
    assert result["writes"] == [[str(hosts), "modified"]]
    assert real.read_text() == "127.0.0.1 real\n"


def test_the_layout_known_beforehand_follows_the_mount_table(tmp_path: Path) -> None:
    """In-process, the layout is worked out before the test's namespace is made, and
    again only after a mount or unmount: a mount made since is covered too."""

    def follow() -> str:
        _namespace.enter_private_namespace(_linux.mount_namespace_id(), False)
        watched = _layout.Watched()
        first = watched.layout()
        unchanged = watched.layout() is first
        _linux.mount("tmpfs", str(tmp_path), "tmpfs")
        steps = dict(watched.layout().steps)
        return f"unchanged: {unchanged}; new mount: {steps.get(str(tmp_path))}"

    answer = answer_of_a_child(follow)
    assert answer == "unchanged: True; new mount: overlay"


def test_a_covered_file_system_keeps_its_top_s_mode_and_owner(tmp_path: Path) -> None:
    """The overlay's top is its upper layer's: it must show what the real one shows
    (``/dev/shm``'s sticky 1777, a file system owned by someone other than root)."""
    owned = tmp_path / "owned"

    def modes() -> dict[str, tuple[int, int]]:
        return {
            path: (stat.S_IMODE(os.stat(path).st_mode), os.stat(path).st_uid)
            for path in ("/", "/dev/shm", str(owned))
        }

    def covered() -> str:
        _namespace.enter_private_namespace(_linux.mount_namespace_id(), False)
        owned.mkdir()
        _linux.mount("tmpfs", str(owned), "tmpfs", MountFlag.NONE, "mode=0751,uid=1234")
        before = modes()
        _hermetic.cover()
        return json.dumps({"before": before, "after": modes()})

    answer = answer_of_a_child(covered)
    assert answer.startswith("{"), answer
    result = json.loads(answer)
    assert result["before"][str(owned)] == [0o751, 1234]
    assert result["before"]["/dev/shm"][0] & stat.S_ISVTX
    assert result["after"] == result["before"]


def test_a_directory_kept_through_is_the_real_one(tmp_path: Path) -> None:
    """pytest's basetemp: what the test writes there stays, for inspection."""
    kept, covered = tmp_path / "kept", tmp_path / "covered"
    kept.mkdir()
    covered.mkdir()

    def body(cover: _hermetic.Cover) -> object:
        (kept / "result.txt").write_text("stays")
        (covered / "result.txt").write_text("vanishes")
        return [(write.path, write.change) for write in cover.writes()]

    listed = in_covered_child(body, through=(str(kept),))
    assert (kept / "result.txt").read_text() == "stays"
    assert not (covered / "result.txt").exists()
    assert listed == [[str(covered / "result.txt"), "created"]]


def test_a_cover_that_fails_halfway_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """In-process, the thread goes on after a failed setup: nothing of the cover may stay.

    The failure comes when the overlays are made and a path is to be bound through.
    """

    def fail_halfway() -> str:
        _namespace.enter_private_namespace(_linux.mount_namespace_id(), False)
        before = sorted(os.listdir("/proc/self/fd"))
        mount = _linux.mount

        def refuse_binds(
            source: str | None,
            target: str,
            fstype: str | None,
            flags: MountFlag = MountFlag.NONE,
            data: str | None = None,
        ) -> None:
            if flags & MountFlag.BIND and flags & MountFlag.REC:
                raise OSError(errno.EPERM, "refused here", target)
            mount(source, target, fstype, flags, data)

        _linux.mount = refuse_binds  # type: ignore[assignment]
        try:
            _hermetic.cover(through=(str(tmp_path),))
        except OSError as error:
            after = sorted(os.listdir("/proc/self/fd"))
            return f"{error.strerror}; same descriptors: {after == before}"
        return "no failure"

    answer = answer_of_a_child(fail_halfway)
    assert answer == "refused here; same descriptors: True"


# --- the marker and the option, end to end, in a throwaway root --------------------------

LAYOUT = """
mkdir -p -m 1777 /var/tmp
mkdir -p /home/me data/sub src && chown "$(stat -c %u /project)" /home/me
printf a > data/a.txt && printf b > data/sub/b.txt && printf s > src/s.txt
chown -R "$(stat -c %u /project):$(stat -c %g /project)" /project
"""

EVERYWHERE = """
import errno, os, subprocess, pytest

PATHS = ["/home/me/note", "/tmp/new", "/var/tmp/new", "/project/data/a.txt"]

def attempt(action):
    try:
        action()
    except OSError as error:
        return error.errno
    return None

@pytest.mark.mountns(hermetic=True)
def test_writes_everywhere(mountns, tmp_path):
    refused = [attempt(lambda path=path: open(path, "w").write("x")) for path in PATHS]
    refused.append(attempt(lambda: os.unlink("/project/data/sub/b.txt")))
    refused.append(attempt(lambda: os.rename("/project/src/s.txt", "/project/src/moved.txt")))
    shell = subprocess.run(["sh", "-c", 'echo z > "$HOME/from-shell"'],
                           env={**os.environ, "HOME": "/home/me"}, capture_output=True)
    (tmp_path / "kept").write_text("kept")
    with open("/dev/null", "w") as null:
        null.write("swallowed")
    refused.append(attempt(lambda: open("/dev/shm/new", "w").write("x")))
    assert os.readlink("/proc/self") == str(os.getpid())
    print("REFUSED", refused, shell.returncode)
    print("WRITES", sorted((w.path, w.change) for w in mountns.writes()))
"""

EXPECTED = [
    ("/dev/shm/new", "created"),
    ("/home/me/from-shell", "created"),
    ("/home/me/note", "created"),
    ("/project/data/a.txt", "modified"),
    ("/project/data/sub/b.txt", "deleted"),
    ("/project/src/moved.txt", "created"),
    ("/project/src/s.txt", "deleted"),
    ("/tmp/new", "created"),
    ("/var/tmp/new", "created"),
]


def run_hermetic(tmp_path: Path, mode: str, uid: int, *args: str) -> Run:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "test_everywhere.py").write_text(EVERYWHERE)
    workdir = tmp_path / "run"
    workdir.mkdir()
    return run_pytest(
        directory, f"--mountns-mode={mode}", "-s", *args,
        workdir=workdir, uid=uid, setup_as_root=LAYOUT, home="/home/me",
    )  # fmt: skip


def printed(result: Run, label: str) -> str:
    line = next(line for line in result.stdout.splitlines() if label in line)
    return line[line.index(label) :]


@pytest.mark.parametrize("mode", ["fork", "inprocess"])
def test_as_root_every_write_is_kept_away_and_listed(tmp_path: Path, mode: str) -> None:
    result = run_hermetic(tmp_path, mode, 0, "--mountns-hermetic=report")
    assert result.outcomes() == {"test_writes_everywhere": "passed"}, result.stdout
    assert printed(result, "REFUSED") == "REFUSED [None, None, None, None, None, None, None] 0"
    assert printed(result, "WRITES") == f"WRITES {EXPECTED}"
    assert result.changes(BASETEMP) == {}
    assert any(path.endswith("/kept") for path in result.after if path.startswith(BASETEMP))
    properties = result.properties["test_writes_everywhere"]
    assert sorted(properties) == sorted(("mountns_write", f"{c}: {p}") for p, c in EXPECTED)
    summary = result.stdout[result.stdout.index("writes outside the declared mounts") :]
    assert "1 test(s) wrote outside their declared mounts" in summary
    for path, change in EXPECTED:
        assert f"  {change}: {path}" in summary


@pytest.mark.parametrize("uid", [0, NOBODY])
@pytest.mark.parametrize("mode", ["fork", "inprocess"])
def test_a_declared_bind_still_writes_through(tmp_path: Path, mode: str, uid: int) -> None:
    """An explicit choice: what the test writes through a bind reaches its source."""
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "test_bind.py").write_text(
        """
import pytest

@pytest.mark.mountns(bind={"/project/target": "/project/source"}, hermetic=True)
def test_writes_through(mountns):
    open("/project/target/through.txt", "w").write("through")
    open("/project/elsewhere.txt", "w").write("kept away")
    print("WRITES", [(w.path, w.change) for w in mountns.writes()])
"""
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = run_pytest(
        directory, f"--mountns-mode={mode}", "-s", workdir=workdir, uid=uid,
        setup_as_root=LAYOUT + "mkdir source target && chown -R $(stat -c %u .) .\n",
    )  # fmt: skip
    assert result.outcomes() == {"test_writes_through": "passed"}, result.stdout
    assert printed(result, "WRITES") == "WRITES [('/project/elsewhere.txt', 'created')]"
    changes = result.changes(BASETEMP)
    assert list(changes) == ["/project/source/through.txt"], changes


def test_strict_fails_the_test_with_the_list(tmp_path: Path) -> None:
    result = run_hermetic(tmp_path, "fork", 0, "--mountns-hermetic=strict")
    outcome, message = result.results["test_writes_everywhere"]
    assert outcome == "error", result.stdout
    assert "mountns: hermetic (strict): the test wrote outside its declared mounts" in message
    assert "  deleted: /project/data/sub/b.txt" in message
    assert result.changes(BASETEMP) == {}


@pytest.mark.parametrize("mode", ["fork", "inprocess"])
def test_as_a_normal_user_the_places_one_writes_to_are_overlaid_the_rest_read_only(
    tmp_path: Path, mode: str
) -> None:
    """Never writable: an overlay cannot copy up root's directories in a user namespace, so
    the file systems turn read-only, and home, the temporary directories and the working
    directory (/project) get overlays of their own."""
    result = run_hermetic(tmp_path, mode, NOBODY, "--mountns-hermetic=report")
    assert result.outcomes() == {"test_writes_everywhere": "passed"}, result.stdout
    assert printed(result, "REFUSED") == "REFUSED [None, None, None, None, None, None, None] 0"
    assert printed(result, "WRITES") == f"WRITES {EXPECTED}"
    warning = printed(result, "HermeticReadOnlyWarning: ")
    assert warning.startswith("HermeticReadOnlyWarning: mountns: hermetic: /, "), warning
    assert "Overlays only where you write: /home/me, /tmp, /var/tmp, /dev/shm, /project" in warning
    assert result.changes(BASETEMP) == {}
    assert any(path.endswith("/kept") for path in result.after if path.startswith(BASETEMP))


def test_as_a_normal_user_the_rest_is_read_only(tmp_path: Path) -> None:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "test_elsewhere.py").write_text(
        """
import errno, os, pytest

@pytest.mark.mountns(hermetic=True)
def test_writes_where_it_may_not():
    for path in ("/owned-elsewhere/new", "/project/data/new"):
        try:
            open(path, "w").close()
        except OSError as error:
            print("REFUSED", path, errno.errorcode[error.errno])
"""
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = run_pytest(
        directory, "-s", workdir=workdir, uid=NOBODY,
        setup_as_root=LAYOUT + "mkdir -m 777 /owned-elsewhere\n",
    )  # fmt: skip
    assert result.outcomes() == {"test_writes_where_it_may_not": "passed"}, result.stdout
    assert "REFUSED /owned-elsewhere/new EROFS" in result.stdout
    assert "REFUSED /project/data/new" not in result.stdout  # the working directory's overlay
    assert result.changes(BASETEMP) == {}


def test_bad_hermetic_values_are_usage_errors(pytester: pytest.Pytester) -> None:
    """The bare option takes a path after it as its value, as pytest-cov's --cov does."""
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--mountns-hermetic", "tests/", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --mountns-hermetic: invalid choice: 'tests/'*"])
    pytester.makeini("[pytest]\nmountns_hermetic = always\n")
    result = pytester.runpytest_subprocess(timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini mountns_hermetic='always': must be one of off, on, report, strict"]
    )


@pytest.mark.parametrize("mode", ["fork", "inprocess"])
def test_a_hermetic_test_may_make_namespaces_and_roots_of_its_own(
    pytester: pytest.Pytester, mode: str
) -> None:
    """Tools that sandbox (bubblewrap, podman, a nested pytest-mountns) work inside:
    the cover's root is on top of the namespace's, so the kernel sees no chroot
    and lets the test create a user namespace, and ``pivot_root`` there."""
    pytester.makepyfile(
        """
import os, subprocess, pytest

def run(*command):
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout

@pytest.mark.mountns(hermetic=True)
def test_sandboxes_inside():
    assert run("unshare", "--user", "--map-root-user", "id", "-u").strip() == "0"
    script = (
        "mkdir -p /tmp/new-root && mount -t tmpfs none /tmp/new-root && "
        "mkdir /tmp/new-root/old && cd /tmp/new-root && pivot_root . old && echo pivoted"
    )
    assert run("unshare", "--mount", "sh", "-c", script).strip() == "pivoted"
    print("RAN IN", os.getpid())
"""
    )
    result = pytester.runpytest("-rP", f"--mountns-mode={mode}")
    result.assert_outcomes(passed=1)
    [line] = [line for line in result.outlines if line.startswith("RAN IN")]
    assert (line == f"RAN IN {os.getpid()}") == (mode == "inprocess")
