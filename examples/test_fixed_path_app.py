"""Test code that writes to a fixed system path, without touching the real one.

Run (as root): python -m pytest examples/test_fixed_path_app.py
"""

import json
import os
from pathlib import Path

import pytest

STATE_FILE = Path("/var/lib/myapp/state.json")


def record_run(name):
    """The "application": remembers every run in a hard-coded state file."""
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {"runs": []}
    state["runs"].append(name)
    STATE_FILE.write_text(json.dumps(state))
    return state


# The tmpfs goes on /var/lib, which exists on every host, because the plugin
# only mounts on existing directories: /var/lib/myapp is then created inside
# the tmpfs. Options follow mount(8); mode=0755 mirrors the real /var/lib
# (a tmpfs defaults to 1777) and size caps what the test may write.
@pytest.mark.mountns(tmpfs={"/var/lib": "size=1m,mode=0755"})
def test_record_run_keeps_history():
    # The tmpfs is there: the host's /var/lib (dpkg, apt, ...) is hidden, and
    # the app starts from scratch. Checked before anything is written, so that
    # without the plugin (-p no:mountns) the test fails here, not in /var/lib.
    assert list(Path("/var/lib").iterdir()) == []
    assert record_run("first") == {"runs": ["first"]}
    assert record_run("second") == {"runs": ["first", "second"]}
    assert json.loads(STATE_FILE.read_text())["runs"] == ["first", "second"]


@pytest.mark.mountns(tmpfs={"/var/lib": "ro"})
def test_record_run_fails_on_read_only_storage():
    # A read-only tmpfs is a cheap way to test the error path. Check that it is
    # there first: on the host's writable /var/lib the write below would succeed.
    assert os.statvfs("/var/lib").f_flag & os.ST_RDONLY
    with pytest.raises(OSError, match="Read-only file system"):
        record_run("first")


def test_host_var_lib_is_untouched():
    # Unmarked, so this runs on the host after the tests above.
    assert Path("/var/lib").is_dir()
    assert not STATE_FILE.parent.exists()
