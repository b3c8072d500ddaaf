"""Give a test its own /etc/resolv.conf, seen by the code under test and by subprocesses.

Run: python -m pytest examples/test_fake_resolv_conf.py
"""

import os
import subprocess
from pathlib import Path

import pytest

RESOLV_CONF = "/etc/resolv.conf"
FAKE = Path(__file__).parent / "fake_resolv.conf"

# A bind target must exist: there is nothing to mount over otherwise.
pytestmark = pytest.mark.skipif(
    not os.path.exists(RESOLV_CONF), reason=f"this host has no {RESOLV_CONF}"
)


def resolver_settings(path=RESOLV_CONF):
    """The code under test: the search domains and name servers a resolv.conf lists."""
    settings = {"search": [], "nameserver": []}
    with open(path) as conf:
        for line in conf:
            fields = line.split()
            if fields and fields[0] in settings:
                settings[fields[0]] += fields[1:]
    return settings


# bind= maps target -> source; a relative source starts at this file's
# directory, so the fake ships next to the test. Both sides must be the same
# kind, a file over a file here. Where /etc/resolv.conf is a symlink
# (systemd-resolved points it into /run), the plugin follows it and binds over
# the real file, so every path that leads there shows the fake. A bind is
# writable and writes reach the source: if the code might write, use ro_bind=.
@pytest.mark.mountns(bind={RESOLV_CONF: "fake_resolv.conf"})
def test_code_under_test_reads_the_fake():
    assert resolver_settings() == {
        "search": ["example.test"],
        "nameserver": ["192.0.2.53", "198.51.100.53"],
    }


@pytest.mark.mountns(bind={RESOLV_CONF: "fake_resolv.conf"})
def test_a_subprocess_reads_the_fake_too():
    # pyfakefs would have faked the file for this Python process only, by
    # patching open() and os: `cat` is another program, which asks the kernel
    # and would get the real file. A mount is the kernel's own answer, so every
    # process in the test's namespace, whatever its language, reads the fake.
    shown = subprocess.run(["cat", RESOLV_CONF], capture_output=True, text=True, check=True)
    assert shown.stdout == FAKE.read_text()


def test_host_resolv_conf_is_untouched():
    # Unmarked, so this runs on the host after the tests above: the real file
    # is still there, and the fake was never copied over it.
    assert Path(RESOLV_CONF).read_text() != FAKE.read_text()
