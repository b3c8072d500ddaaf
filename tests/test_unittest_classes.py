"""A ``mountns`` marker on a ``unittest.TestCase`` class: per test, and never the class setup."""

from __future__ import annotations

import pytest

from tests._helpers import outcomes

pytestmark = pytest.mark.both_modes


def test_class_setup_beside_declared_mounts_is_a_declaration_error(
    pytester: pytest.Pytester,
) -> None:
    """setUpClass would write to the host's directory; nothing of the class runs."""
    target = pytester.mkdir("srv")
    pytester.makepyfile(
        f"""
import os, unittest, pytest

@pytest.mark.mountns({str(target)!r})
class TestWithClassSetup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        open(os.path.join({str(target)!r}, "from-setUpClass"), "w").close()

    def test_sees_it(self):
        self.assertTrue(os.path.exists(os.path.join({str(target)!r}, "from-setUpClass")))
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert outcomes(result.stdout.str()) == {"errors": 1}
    result.stdout.fnmatch_lines(
        [
            "*::TestWithClassSetup::test_sees_it: @pytest.mark.mountns on TestWithClassSetup: "
            "it defines setUpClass, which unittest runs once for the class, in pytest's "
            "process, outside each test's namespace*Do that in setUp and tearDown*"
        ]
    )
    assert list(target.iterdir()) == []


def test_set_up_runs_inside_each_test_s_namespace(pytester: pytest.Pytester) -> None:
    target = pytester.mkdir("srv")
    pytester.makepyfile(
        f"""
import os, unittest, pytest

TARGET = {str(target)!r}

@pytest.mark.mountns(TARGET)
class TestWithSetUp(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(TARGET, "from-setUp"), "a") as f:
            f.write(self.id() + "\\n")

    def test_one(self):
        self.assertEqual(os.listdir(TARGET), ["from-setUp"])

    def test_two_sees_only_its_own(self):
        with open(os.path.join(TARGET, "from-setUp")) as f:
            self.assertEqual(len(f.readlines()), 1)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert outcomes(result.stdout.str()) == {"passed": 2}
    assert list(target.iterdir()) == []


def test_class_setup_with_no_mounts_declared_runs_as_without_isolation(
    pytester: pytest.Pytester,
) -> None:
    """``--mountns-all`` declares nothing: setUpClass does what it always did."""
    pytester.makepyfile(
        """
import unittest

class TestWithClassSetup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.resource = "ready"

    def test_uses_it(self):
        self.assertEqual(self.resource, "ready")
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mountns-all")
    assert outcomes(result.stdout.str()) == {"passed": 1}
