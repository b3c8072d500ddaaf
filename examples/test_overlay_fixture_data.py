"""Let code rewrite shipped fixture data in place, without changing it on disk.

Run: python -m pytest examples/test_overlay_fixture_data.py
"""

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

# Order files in the old format (schema 1), shipped with the examples.
ORDERS = Path(__file__).parent / "data" / "orders"
# Read at import time, in pytest's own process, before any test ran.
SHIPPED = {path.name: path.read_bytes() for path in ORDERS.iterdir()}


def migrate(directory):
    """The code under test: upgrades every order file to schema 2, in place."""
    migrated = []
    for path in sorted(Path(directory).glob("*.json")):
        order = json.loads(path.read_text())
        if order["schema"] == 2:
            continue
        order.update(schema=2, total_cents=int(Decimal(order.pop("total")) * 100))
        staged = path.with_suffix(".tmp")
        staged.write_text(json.dumps(order) + "\n")
        staged.replace(path)  # atomic, as a careful migration is
        migrated.append(path.name)
    return migrated


# overlay= puts a copy-on-write layer over the directory: the test reads the
# real files, and what it writes, renames or deletes goes to a tmpfs layer
# that dies with the test. The usual alternative, copying the data into
# tmp_path, costs a copy per test and a different path; the overlay keeps the
# path, which matters when the code under test has it hard-coded.
@pytest.mark.mountns(overlay=[ORDERS])
def test_migrate_rewrites_the_files_in_place():
    # A guard worth its line: with the plugin off (-p no:mountns) the marker
    # is ignored, and the migration would rewrite the shipped files for good.
    assert os.path.ismount(ORDERS)
    assert migrate(ORDERS) == ["1001.json", "1002.json"]
    assert json.loads((ORDERS / "1001.json").read_text()) == {
        "schema": 2,
        "customer": "Ada",
        "total_cents": 1250,
    }
    assert json.loads((ORDERS / "1002.json").read_text())["total_cents"] == 705
    assert sorted(path.name for path in ORDERS.iterdir()) == ["1001.json", "1002.json"]
    assert migrate(ORDERS) == []  # a second run finds nothing left to do


def test_shipped_files_are_unchanged_on_disk():
    # Unmarked, so this runs on the host after the migration above: the
    # shipped files are byte for byte what they were, with nothing added.
    assert {path.name: path.read_bytes() for path in ORDERS.iterdir()} == SHIPPED
    assert all(json.loads(data)["schema"] == 1 for data in SHIPPED.values())
