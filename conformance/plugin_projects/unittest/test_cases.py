"""A TestCase with class fixtures that write a journal, subTest, skip and expectedFailure."""

import unittest
from pathlib import Path

JOURNAL = Path(__file__).with_name("journal.log")


def note(line: str) -> None:
    with JOURNAL.open("a") as journal:
        journal.write(line + "\n")


class Numbers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        note("setUpClass")

    @classmethod
    def tearDownClass(cls):
        note("tearDownClass")

    def setUp(self):
        note(f"setUp {self._testMethodName}")

    def test_even(self):
        for number in (0, 2, 3, 4):
            with self.subTest(number=number):
                self.assertEqual(number % 2, 0)

    def test_plain(self):
        self.assertTrue(True)

    def test_skipped(self):
        self.skipTest("not today")

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertEqual(1, 2)
