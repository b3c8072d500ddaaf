"""What the figures were measured on: they mean little without the machine."""

import os
import platform
import re
from pathlib import Path


def describe() -> str:
    """nproc, CPU model, RAM, kernel, distribution and transparent huge pages."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        ram_gib = int(meminfo.readline().split()[1]) / 1024 / 1024
    distro = platform.system()
    with open("/etc/os-release") as release:
        for line in release:
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    thp_mode = re.search(r"\[(\w+)\]", thp.read_text()) if thp.exists() else None
    return (
        f"{len(os.sched_getaffinity(0))} x {model}, {ram_gib:.0f} GiB RAM, "
        f"Linux {platform.release()}, {distro}, "
        f"transparent huge pages: {thp_mode.group(1) if thp_mode else 'n/a'}"
    )
