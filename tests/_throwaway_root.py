"""Run a command inside a throwaway root: a tmpfs made the root of a fresh mount namespace.

For tests whose failure would write to the host's file system (a file directly
under ``/``, a bind source, the project): they run here, where ``/`` is a
tmpfs that vanishes with the namespace, and the snapshots taken before and
after the command show every file it created, changed or removed on it.

The system directories, Python and the packages under test are bound in
read-only, at their own paths; the parents made for them are mode 0755, so
a real unprivileged user (``uid``) can run Python even when it lives under
``/root``. ``pivot_root``, not ``chroot``: a chrooted process may not create
user namespaces, and the unprivileged runs need them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest_mountns

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
NOBODY = 65534

SNAPSHOT = r"""
import hashlib, json, os, stat, sys
root_dev = os.stat("/").st_dev
found = {}
for top, dirs, files, topfd in os.fwalk("/", follow_symlinks=False):
    dirs[:] = [
        d for d in dirs if os.stat(d, dir_fd=topfd, follow_symlinks=False).st_dev == root_dev
    ]
    for name in dirs + files:
        path = os.path.join(top, name)
        info = os.stat(name, dir_fd=topfd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            what = "link " + os.readlink(name, dir_fd=topfd)
        elif stat.S_ISREG(info.st_mode):
            fd = os.open(name, os.O_RDONLY, dir_fd=topfd)
            with open(fd, "rb") as f:
                what = "file " + hashlib.sha256(f.read()).hexdigest()
        else:
            what = "dir" if stat.S_ISDIR(info.st_mode) else f"other {info.st_mode:o}"
        found[path] = f"{what} {stat.S_IMODE(info.st_mode):o} {info.st_uid}"
json.dump(found, open(sys.argv[1], "w"), indent=0, sort_keys=True)
"""

ENTER = r"""
set -eu
new=$1 out=$2 uid=$3 shift_count=3
shift 3
mount -t tmpfs -o mode=0755 throwaway-root "$new"
bind_ro() {  # bind $1 at $2 (by default the same path) in the new root, read-only
    to=${2:-$1}
    if [ -L "$1" ]; then
        mkdir -p "$new$(dirname "$to")"; ln -s "$(readlink "$1")" "$new$to"; return
    fi
    [ -e "$1" ] || return 0
    mkdir -p "$new$(dirname "$to")"
    if [ -d "$1" ]; then mkdir -p "$new$to"; else touch "$new$to"; fi
    mount --rbind "$1" "$new$to"
    mount -o remount,bind,ro "$new$to"
}
for path in $SYSTEM; do bind_ro "$path"; done
printf '%s\n' "$BINDS" | while IFS='|' read -r from to; do
    [ -n "$from" ] && bind_ro "$from" "$to"
done
mkdir -p "$new/proc" "$new/sys" "$new/dev" "$new/tmp" "$new/out" "$new/project" "$new/.old"
chmod 1777 "$new/tmp"
mount --rbind /proc "$new/proc"
mount --rbind /sys "$new/sys"
mount -o remount,bind,ro "$new/sys"
mount -t tmpfs -o mode=0755,size=1m throwaway-dev "$new/dev"
for device in $DEVICES; do
    touch "$new/dev/$device" && mount --bind "/dev/$device" "$new/dev/$device"
done
mkdir "$new/dev/shm" && mount -t tmpfs -o mode=1777,size=16m throwaway-shm "$new/dev/shm"
mount --bind "$out" "$new/out"
cp -a "$PROJECT/." "$new/project/"
chown -R "$uid:$uid" "$new/project" "$new/out"
cd "$new"
pivot_root . .old
umount -l /.old
rmdir /.old
cd /project
eval "$SETUP_AS_ROOT"
python=$1; shift
"$python" -c "$SNAPSHOT_CODE" /out/before.json
status=0
setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$python" "$@" >/out/stdout 2>/out/stderr \
    || status=$?
"$python" -c "$SNAPSHOT_CODE" /out/after.json
exit $status
"""


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]
    results: dict[str, tuple[str, str]]
    """Per test name: its outcome (passed, failed, error, skipped) and message, from junitxml."""
    properties: dict[str, list[tuple[str, str]]]
    """Per test name: its junitxml properties, in order."""

    def changes(self, *ignore: str) -> dict[str, tuple[str | None, str | None]]:
        """Every path created, changed or removed, outside the ``ignore`` prefixes."""
        paths = set(self.before) | set(self.after)
        return {
            path: (self.before.get(path), self.after.get(path))
            for path in sorted(paths)
            if self.before.get(path) != self.after.get(path)
            and not any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignore)
        }

    def outcomes(self) -> dict[str, str]:
        return {name: outcome for name, (outcome, _) in self.results.items()}


def run_pytest(
    project: Path,
    *args: str,
    workdir: Path,
    uid: int = 0,
    setup_as_root: str = "",
    timeout: float = 120,
    home: str = "/tmp",
) -> Run:
    """Run pytest with the plugin (and no other) in ``/project``, a copy of ``project``,
    inside a throwaway root, as ``uid``. Its basetemp is ``/tmp/basetemp``.

    ``setup_as_root``, a shell script, runs first in ``/project``, as root.
    ``home`` is the inner pytest's ``HOME``.
    """
    pytest_args = ["-m", "pytest", "-p", "pytest_mountns.plugin", "-p", "no:cacheprovider"]
    pytest_args += ["--basetemp=/tmp/basetemp", "--junitxml=/out/junit.xml", "-rA", *args]
    new, out = workdir / "root", workdir / "out"
    new.mkdir()
    out.mkdir()
    # Python where it is; the venv and the package under test at paths of their own,
    # so that nothing is mounted below /tmp (which a test may overlay) or /project.
    package = os.path.dirname(os.path.realpath(pytest_mountns.__file__))
    binds = [(os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_prefix))]
    python = sys.executable
    if sys.prefix != sys.base_prefix:
        binds.append((os.path.realpath(sys.prefix), "/opt/venv"))
        python = "/opt/venv/bin/python"
    binds.append((package, "/opt/under-test/pytest_mountns"))
    env = {
        "PATH": f"{os.path.dirname(python)}:/usr/bin:/bin:/usr/sbin:/sbin",
        "SYSTEM": " ".join(SYSTEM),
        "BINDS": "\n".join(f"{a}|{b}" for a, b in binds if not a.startswith(SYSTEM)),
        "DEVICES": " ".join(DEVICES),
        "PROJECT": str(project),
        "SNAPSHOT_CODE": SNAPSHOT,
        "SETUP_AS_ROOT": setup_as_root,
        "HOME": home,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # the inner pytest: pytest and the plugin only
        "PYTHONPATH": "/opt/under-test",  # the package under test, whatever is installed
        "LANG": "C.UTF-8",
    }
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", ENTER, "enter"]
    completed = subprocess.run(
        [*command, str(new), str(out), str(uid), python, *pytest_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    stdout = (out / "stdout").read_text() if (out / "stdout").exists() else ""
    stderr = (out / "stderr").read_text() if (out / "stderr").exists() else completed.stderr
    if not (out / "after.json").exists():
        raise RuntimeError(f"the throwaway root failed: {completed.stderr}")
    return Run(
        completed.returncode,
        stdout,
        stderr,
        json.loads((out / "before.json").read_text()),
        json.loads((out / "after.json").read_text()),
        _results(out / "junit.xml"),
        _properties(out / "junit.xml"),
    )


def _results(junit: Path) -> dict[str, tuple[str, str]]:
    if not junit.exists():
        return {}
    found = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = f"{child.get('message', '')}\n{child.text or ''}"
                break
        found[case.get("name", "")] = (outcome, message)
    return found


def _properties(junit: Path) -> dict[str, list[tuple[str, str]]]:
    if not junit.exists():
        return {}
    return {
        case.get("name", ""): [
            (prop.get("name", ""), prop.get("value", "")) for prop in case.iter("property")
        ]
        for case in ElementTree.parse(junit).iter("testcase")
    }
