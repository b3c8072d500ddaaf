"""Bad declarations error only the test that made them, before anything is mounted or created."""

from __future__ import annotations

import pytest

from tests._helpers import mount_table

pytestmark = pytest.mark.both_modes


def test_each_bad_declaration_errors_only_its_own_test(pytester: pytest.Pytester) -> None:
    pytester.mkdir("dir")
    (pytester.path / "file").write_text("x")
    missing = pytester.path / "missing"
    pytester.makepyfile(
        f"""
import pytest

@pytest.mark.mountns("relative/dir")
def test_relative(): pass

@pytest.mark.mountns({str(missing)!r})
def test_missing(): pass

@pytest.mark.mountns({str(pytester.path / "file")!r})
def test_file(): pass

@pytest.mark.mountns("/")
def test_root(): pass

@pytest.mark.mountns("/proc")
def test_proc(): pass

@pytest.mark.mountns("/dev")
def test_dev(): pass

@pytest.mark.mountns("/sys")
def test_sys(): pass

@pytest.mark.parametrize("size", ["banana", "-5", "0", str(2**64)])
def test_size(size):
    pass
test_size = pytest.mark.mountns(tmpfs={{{str(pytester.path / "dir")!r}: "size=banana"}})(test_size)

@pytest.mark.mountns(tmpfs={{{str(pytester.path / "dir")!r}: "size=1m,frobnicate=1"}})
def test_unknown_option(): pass

@pytest.mark.mountns(42)
def test_wrong_type(): pass

@pytest.mark.mountns(frobnicate={{"/a": "/b"}})
def test_unknown_keyword(): pass

@pytest.mark.mountns(bind={{{str(pytester.path / "dir")!r}: "no-such-source"}})
def test_missing_bind_source(): pass

@pytest.mark.mountns(ro_bind={{{str(pytester.path / "dir")!r}: "file"}})
def test_bind_kind_mismatch(): pass

@pytest.mark.mountns(overlay=[{str(pytester.path / "file")!r}])
def test_overlay_on_a_file(): pass

@pytest.mark.mountns(hide=["/"])
def test_hide_root(): pass

@pytest.mark.mountns(propagation="shared")
def test_bad_propagation(): pass

def test_ordinary_tests_still_run(): pass

@pytest.mark.mountns({str(pytester.path / "dir")!r})
def test_good_isolated_tests_still_run(): pass
"""
    )
    before = mount_table()
    result = pytester.runpytest("-rE")
    assert mount_table() == before
    result.assert_outcomes(passed=2, errors=19)
    result.stdout.fnmatch_lines_random(
        [
            "*::test_relative: @pytest.mark.mountns tmpfs target 'relative/dir': must be an abs*",
            "*::test_missing: @pytest.mark.mountns tmpfs target '*missing': does not exist*",
            "*::test_file: @pytest.mark.mountns tmpfs target '*file': is not a directory*",
            "*::test_root: @pytest.mark.mountns tmpfs target '/': cannot be a mount target*",
            "*::test_proc: *'/proc': cannot be a mount target: /proc is the kernel's process*",
            "*::test_dev: *'/dev': cannot be a mount target*",
            "*::test_sys: *'/sys': cannot be a mount target*",
            "*::test_size?banana?: *size='banana': must be a positive number*",
            "*::test_unknown_option: *tmpfs[[]'*dir'] frobnicate: unknown option*",
            "*::test_wrong_type: *tmpfs target 42: must be a str or os.PathLike, not int*",
            "*::test_unknown_keyword: *keyword frobnicate=: unknown keyword*",
            "*::test_missing_bind_source: *bind[[]'*dir'] source '/*/no-such-source': does not"
            " exist (relative sources start at the test file's*",
            "*::test_bind_kind_mismatch: *ro_bind target '*dir': is a directory but its source"
            " '*file' is not a directory*",
            "*::test_overlay_on_a_file: *overlay target '*file': is not a directory*",
            "*::test_hide_root: *hide target '/': cannot be a mount target*",
            "*::test_bad_propagation: *propagation='shared': must be one of 'private', 'slave'",
        ]
    )
    assert not missing.exists()


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ("banana", "must be a positive number"),
        ("-5", "must be a positive number"),
        ("0", "0 would mean unlimited"),
        (str(2**64), "is too large"),
    ],
)
def test_bad_sizes_are_explained(pytester: pytest.Pytester, size: str, reason: str) -> None:
    pytester.makepyfile(
        f"""
import pytest, os
@pytest.mark.mountns(tmpfs={{os.getcwd(): {{"size": {size!r}}}}})
def test_sized(): pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*test_sized: @pytest.mark.mountns tmpfs[[]*size={size!r}: {reason}*"]
    )


def test_a_skip_mark_wins_over_a_bad_declaration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
@pytest.mark.skip(reason="not today")
@pytest.mark.mountns("relative")
def test_skipped(): pass
"""
    )
    pytester.runpytest().assert_outcomes(skipped=1)


def test_a_marker_added_as_the_test_s_protocol_starts_is_applied(
    pytester: pytest.Pytester,
) -> None:
    """Markers are read when the test's turn comes, not when the test before it ran."""
    data = pytester.mkdir("data")
    pytester.makeconftest(
        f"""
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.name == "test_second":
        item.add_marker(pytest.mark.mountns(tmpfs=[{str(data)!r}]))
    return (yield)
"""
    )
    pytester.makepyfile(
        f"""
import pytest

@pytest.mark.mountns
def test_first():
    pass

@pytest.mark.mountns
def test_second():
    open({str(data / "x")!r}, "w").close()
"""
    )
    pytester.runpytest().assert_outcomes(passed=2)
    assert list(data.iterdir()) == []  # it wrote to the tmpfs the marker declared


def test_the_fixture_s_errors_show_the_declaration_not_the_plugin_s_code(
    pytester: pytest.Pytester,
) -> None:
    """A bad ``mountns.bind`` fails the test at its own line, with the reason, as
    ``monkeypatch`` would: the plugin's frames are not the user's business."""
    pytester.makepyfile(
        """
def test_binds_a_missing_file(mountns):
    mountns.bind("no-such-file", "/etc/hostname")
"""
    )
    result = pytester.runpytest("--tb=long")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '>*mountns.bind("no-such-file", "/etc/hostname")',
            "E*DeclarationError: mountns.bind: bind[[]'/etc/hostname'] source '*no-such-file': "
            "does not exist*",
        ]
    )
    assert "pytest_mountns/" not in result.stdout.str()  # no frame of the plugin's files
