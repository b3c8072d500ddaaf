"""Hide a real directory behind a tmpfs for one test; the host copy is never touched.

Run: python -m pytest examples/test_hide_directory.py
"""

from pathlib import Path

import pytest

# A directory that ships with the examples and holds ``greet.txt``.
#
# A target must exist when the test starts (the plugin never creates
# directories on the host). It may come with the repository, as here, or be
# made by a module- or session-scoped fixture, which runs before the check.
GREETING_DIR = Path(__file__).parent / "greeting"


@pytest.mark.mountns(GREETING_DIR)
def test_directory_is_empty_and_writable_inside():
    # A fresh tmpfs is mounted over the directory in this test's own mount
    # namespace, so the file that is really there is out of sight...
    assert list(GREETING_DIR.iterdir()) == []
    # ...and anything written lands in the tmpfs, which vanishes with the test.
    (GREETING_DIR / "scratch.txt").write_text("only inside the test\n")
    assert (GREETING_DIR / "scratch.txt").read_text() == "only inside the test\n"


def test_host_directory_is_untouched():
    # Unmarked, so this runs in pytest's own process and namespace, after the
    # test above (pytest keeps file order): the original is back, the scratch
    # file never existed here.
    assert (GREETING_DIR / "greet.txt").read_text() == "hello from the host\n"
    assert not (GREETING_DIR / "scratch.txt").exists()
