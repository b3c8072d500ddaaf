"""Catch stray writes: make the whole file system read-only but for one writable hole.

Run: python -m pytest examples/test_read_only_root.py
"""

import errno
import os
import subprocess
from pathlib import Path

import pytest

OUT_DIR = Path("/var/tmp")  # where the code under test is allowed to write
ROWS = [("apples", 3), ("pears", 5)]


def export(rows, out_dir):
    """The code under test: writes a CSV into ``out_dir``, and nothing else."""
    out = Path(out_dir) / "export.csv"
    out.write_text("".join(f"{name},{count}\n" for name, count in rows))
    return out


def export_with_stray_log(rows, out_dir):
    """A buggy version that also leaves a log in the working directory."""
    out = export(rows, out_dir)
    Path("export.log").write_text(f"wrote {out}\n")  # under pytest: your checkout
    return out


def read_only(path):
    """Whether the mount that holds ``path`` is read-only, as the kernel reports it."""
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


# readonly=["/"] makes every mount read-only, recursively, in this test's
# namespace only; the tmpfs declared on OUT_DIR is mounted on top afterwards
# (parents first) and stays writable. A write anywhere else fails at once with
# EROFS, instead of quietly littering the machine or the repository.
ISOLATED = pytest.mark.mountns(readonly=["/"], tmpfs={OUT_DIR: "size=1m"})


@ISOLATED
def test_export_writes_only_its_output():
    # First, the mounts are there: the working directory, like all of /, is
    # read-only, and the tmpfs hole on OUT_DIR is writable. Without the plugin
    # (-p no:mountns) the test fails here, before it writes anything.
    assert read_only(".") and not read_only(OUT_DIR)
    assert export(ROWS, OUT_DIR).read_text() == "apples,3\npears,5\n"


@ISOLATED
def test_stray_write_is_caught():
    # As above; without the mounts, export.log would land in your checkout.
    assert read_only(".") and not read_only(OUT_DIR)
    with pytest.raises(OSError) as caught:
        export_with_stray_log(ROWS, OUT_DIR)
    assert caught.value.errno == errno.EROFS
    assert caught.value.filename == "export.log"
    # The allowed write went through before the stray one failed.
    assert (OUT_DIR / "export.csv").exists()


@ISOLATED
def test_subprocesses_are_caught_too():
    assert read_only(".") and not read_only(OUT_DIR)  # as above
    # The mounts are the kernel's, so they bind every program the test starts.
    # touch: cannot touch 'export.log': Read-only file system
    assert subprocess.run(["touch", "export.log"], capture_output=True).returncode != 0
    subprocess.run(["touch", OUT_DIR / "export.csv"], check=True)


def test_no_stray_file_on_the_host():
    # Unmarked, so this runs on the host, in the same working directory.
    assert not Path("export.log").exists()
