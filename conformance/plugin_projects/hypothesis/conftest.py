"""A profile whose example database lives inside this project's copy.

Only an unseeded run fills it: a forced seed (``--hypothesis-seed``) or ``derandomize``
turns the database off.
"""

from pathlib import Path

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile(
    "matrix",
    database=DirectoryBasedExampleDatabase(Path(__file__).parent / ".hypothesis-db"),
    deadline=None,
    max_examples=100,
    print_blob=False,
)
settings.load_profile("matrix")
