"""Helpers shared by the suite's modules."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def mount_table() -> list[str]:
    """The whole entries of this process's mount table, to compare before and after."""
    with open("/proc/self/mountinfo") as table:
        return sorted(table)


def run_in_shared_root(
    command: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a shell command in a throwaway mount namespace with / shared, as systemd has it."""
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount --make-rshared / && {command}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
