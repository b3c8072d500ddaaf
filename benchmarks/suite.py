"""The suite the benchmark times: the files of ``trivial_suite/``, copied to a scratch directory.

Copied, because its size is chosen per run (``suite.json`` says which tests
each file holds), and because pytest and the benchmark write where the suite
runs (bytecode, the probe's output, the mount points), which the checkout,
shared and perhaps read-only, is not for.
"""

import json
import shutil
from pathlib import Path

FILES = Path(__file__).resolve().parent / "trivial_suite"
SHARED = ("pytest.ini", "conftest.py", "_bench_probe.py")
"""Copied once: the ini file (no outside configuration applies), the fixture, the probe."""


def module_names(modules: int) -> list[str]:
    """One file name per module: ``test_trivial.py`` alone, numbered when there are more."""
    if modules == 1:
        return ["test_trivial.py"]
    return [f"test_trivial_{module:03d}.py" for module in range(modules)]


def copy(root: Path, tests: int, modules: int) -> None:
    """``tests`` trivial tests spread over ``modules`` files, with the shared files.

    Many modules, because a spare child is forked only for a test of the same
    module: one file of N tests would flatter it.
    """
    for name in SHARED:
        shutil.copyfile(FILES / name, root / name)
    shares = {}
    for module, name in enumerate(module_names(modules)):
        shutil.copyfile(FILES / "test_trivial.py", root / name)
        shares[name] = list(range(module, tests, modules))
    (root / "suite.json").write_text(json.dumps(shares))
