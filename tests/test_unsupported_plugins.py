"""A plugin known not to work under isolation is named at configure time, with why."""

from __future__ import annotations

import pytest

from tests._helpers import outcomes


@pytest.mark.parametrize(
    ("plugin", "mode", "warned"),
    [
        ("flaky", "fork", True),
        ("flaky", "inprocess", True),
        ("syrupy", "fork", True),
        ("syrupy", "inprocess", False),
    ],
)
def test_an_active_plugin_that_isolation_changes_is_named(
    pytester: pytest.Pytester, plugin: str, mode: str, warned: bool
) -> None:
    """A stand-in module registered under the plugin's name is enough to be active."""
    pytester.makepyfile(**{plugin: "", "test_one": "def test_one(): pass"})
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", plugin, "--mountns-all", f"--mountns-mode={mode}"
    )
    expected = {"passed": 1, "warnings": 1} if warned else {"passed": 1}
    assert outcomes(result.stdout.str()) == expected
    if warned:
        result.stdout.fnmatch_lines([f"*UnsupportedPluginWarning: mountns: {plugin} (*{mode}*"])
